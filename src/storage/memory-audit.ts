// The audit log in memory (memory: store, tests); behaves like SqlAudit (src/storage/sql-audit.ts).
import { type AuditEntry, type AuditOutcome, type AuditQuery, type AuditStart, type AuditStore, auditMatches } from '../domain/audit.js';

export class MemoryAudit implements AuditStore {
  private readonly entries = new Map<number, AuditEntry>();
  private last = 0;

  async begin(start: AuditStart) {
    const id = ++this.last;
    this.entries.set(id, structuredClone({ ...start, id, status: null }));
    return id;
  }
  async finish(id: number, outcome: AuditOutcome) {
    const e = this.entries.get(id);
    if (e) this.entries.set(id, { ...e, ...structuredClone(outcome) });
  }
  async search(q: AuditQuery) {
    return [...this.entries.values()]
      .filter((e) => auditMatches(e, q))
      .sort((a, b) => b.id - a.id)
      .slice(0, q.limit)
      .map((e) => structuredClone(e));
  }
  async purge(before: number) {
    let n = 0;
    for (const [id, e] of this.entries) if (e.at < before && this.entries.delete(id)) n++;
    return n;
  }
}
