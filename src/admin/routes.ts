// What every admin route is made of: a handler, an HTTP error with its status, and a raw (non-JSON) answer.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type Body = Record<string, unknown>;

export type Handler = (p: { params: string[]; query: URLSearchParams; body: Body }) => Promise<unknown>;

/** A response that is not JSON (the CSV export). */
export class Raw {
  constructor(
    readonly type: string,
    readonly body: string,
  ) {}
}
