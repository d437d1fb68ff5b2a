// The widget's own words, zh and en, in one table. With no data-lang the widget speaks both at once
// (the demo's bilingual labels); setLocale('zh'|'en') or data-lang picks one.
export type Locale = 'zh' | 'en' | 'both';
export type TextKey = keyof typeof TEXTS.en;

const TEXTS = {
  zh: {
    launcher: '客服',
    title: '在线客服',
    connecting: '连接中…',
    reconnecting: '重新连接…',
    online: '在线',
    offline: '无法连接，正在重试',
    close: '关闭',
    yourMessage: '您的消息',
    placeholder: '请输入消息',
    placeholderLeave: '请留言，我们开门后回复',
    send: '发送',
    messages: '消息',
    unread: '条未读',
    rate: '评分',
    closed: '现在不在服务时间 — 请留言，我们会尽快回复',
    prechatTitle: '开始咨询前，请留下您的信息',
    prechatStart: '开始咨询',
    name: '姓名',
    email: '电子邮箱',
    phone: '电话',
    order: '订单号',
  },
  en: {
    launcher: 'Chat',
    title: 'Customer service',
    connecting: 'Connecting…',
    reconnecting: 'Reconnecting…',
    online: 'Online',
    offline: 'Offline — retrying',
    close: 'Close chat',
    yourMessage: 'Your message',
    placeholder: 'Type a message',
    placeholderLeave: 'Leave a message, we reply when we open',
    send: 'Send',
    messages: 'Messages',
    unread: 'unread',
    rate: 'Rate this conversation',
    closed: "We're closed — leave a message and we'll reply",
    prechatTitle: 'Before we start, tell us who you are',
    prechatStart: 'Start chat',
    name: 'Name',
    email: 'E-mail',
    phone: 'Phone',
    order: 'Order number',
  },
};

/** Labels for which screen readers and the tests already know the bilingual wording. */
const BOTH: Partial<Record<TextKey, string>> = { close: 'Close chat', yourMessage: 'Your message', messages: 'Messages' };

export function text(locale: Locale, key: TextKey): string {
  if (locale !== 'both') return TEXTS[locale][key];
  return BOTH[key] ?? `${TEXTS.zh[key]} ${TEXTS.en[key]}`;
}

export function localeOf(raw: string | null | undefined): Locale {
  const l = (raw ?? '').toLowerCase();
  return l.startsWith('zh') ? 'zh' : l.startsWith('en') ? 'en' : 'both';
}
