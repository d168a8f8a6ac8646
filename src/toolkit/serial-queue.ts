/**
 * Runs tasks one at a time, in the order they were queued: what a socket that takes one send at a
 * time, or a reload that must not overlap itself, needs. A failed task fails only its own caller;
 * the tasks queued after it still run.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` after every task queued before it; resolves or rejects with its outcome. */
  run<T>(task: () => T | PromiseLike<T>): Promise<T> {
    const next = this.tail.then(() => task());
    this.tail = next.catch(() => {});
    return next;
  }

  /** Resolves once every task queued so far has settled; never rejects. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
