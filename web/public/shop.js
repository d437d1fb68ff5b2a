// The demo shop's own script: "Ask about this" buttons use the widget's JS API (docs/web.md).
for (const b of document.querySelectorAll('button[data-ask-product]')) {
  b.addEventListener('click', () => {
    const w = window.ConsultWidget;
    if (!w) return; // widget.js not loaded yet
    w.setProduct(b.dataset.askProduct);
    w.open();
  });
}
