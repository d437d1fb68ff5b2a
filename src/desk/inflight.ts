// Work that must finish before shutdown closes the store: stanza decisions and timer runs.
export class InFlight {
  private readonly pending = new Set<Promise<unknown>>();

  track = <T>(work: Promise<T>): Promise<T> => {
    this.pending.add(work);
    const done = () => this.pending.delete(work);
    work.then(done, done);
    return work;
  };

  get size(): number {
    return this.pending.size;
  }

  /** Waits until nothing is pending (new work may arrive meanwhile) or `ms` pass; false on timeout. */
  async drain(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.pending.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.pending]),
        new Promise((r) => {
          timer = setTimeout(r, left);
        }),
      ]);
      clearTimeout(timer);
    }
    return true;
  }
}
