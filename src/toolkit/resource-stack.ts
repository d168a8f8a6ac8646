/**
 * What a daemon opened, closed in reverse order of opening on shutdown (timers, then sockets that
 * end their loops, then what the loops used, the store last). `close()` is idempotent: every call
 * waits for the one shutdown. One failing close does not keep the others open.
 */
export class ResourceStack {
  private readonly closers: (() => unknown)[] = [];
  private closing: Promise<void> | undefined;

  /** Reports each failed close (the first one also rejects `close()`). */
  constructor(private readonly onError: (error: unknown) => void = () => {}) {}

  /** Registers `resource` to be closed before everything registered earlier; returns it. */
  use<T extends { close(): unknown }>(resource: T): T {
    this.defer(() => resource.close());
    return resource;
  }

  /**
   * Registers a close function. After shutdown began it runs at once (and `close()` waits for it
   * too): something opened during shutdown must not outlive it.
   */
  defer(close: () => unknown): void {
    if (this.closing === undefined) {
      this.closers.push(close);
      return;
    }
    this.closing = this.closing.finally(() => this.run([close]).catch(() => {}));
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Closes everything registered, newest first, each once; rejects with the first failure. */
  close(): Promise<void> {
    this.closing ??= this.run(this.closers.splice(0).reverse());
    return this.closing;
  }

  private async run(closers: (() => unknown)[]): Promise<void> {
    let failure: { error: unknown } | undefined;
    for (const close of closers) {
      try {
        await close();
      } catch (error) {
        this.onError(error);
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
  }
}
