// The error class of the `edgeward` package. The Rust side (src/web/mod.rs, `js_error`) throws
// instances of it through wasm-bindgen, which bundles this file with the generated glue; the
// package's entry points re-export it with the guard.

/** What every function of the package throws: a stable `code`, and `status` or `field`. */
export class EdgewardError extends Error {
  /**
   * @param {string} code a stable code: a Worker reason code, or the package's own
   * @param {string} [message] human-readable; defaults to the code
   * @param {{status?: number, field?: string}} [details]
   */
  constructor(code, message, details) {
    super(message ?? code);
    this.code = code;
    // Present only where they apply, so `'status' in e` says whether the Worker answers with one.
    if (details?.status !== undefined) this.status = details.status;
    if (details?.field !== undefined) this.field = details.field;
  }
}

// On the prototype, as for the built-in errors; not enumerable.
Object.defineProperty(EdgewardError.prototype, 'name', { value: 'EdgewardError', writable: true, configurable: true });

/**
 * Whether `e` is an `EdgewardError`. Also true for one thrown by another copy of the package
 * (`edgeward/web` next to `edgeward`, a second bundle, another realm), which `instanceof` misses.
 * @param {unknown} e
 * @returns {e is EdgewardError}
 */
export function isEdgewardError(e) {
  return e instanceof EdgewardError || (typeof e === 'object' && e !== null && e.name === 'EdgewardError' && typeof e.code === 'string');
}
