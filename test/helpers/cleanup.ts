/**
 * Everything a test opens, closed in reverse order in afterEach, even when the test failed
 * halfway. One failing close does not stop the others; the first error is rethrown at the end.
 */
export class Cleanup {
  #steps: (() => unknown)[] = [];

  /** Registers `close` for `resource` and returns the resource. */
  add<T>(resource: T, close: (resource: T) => unknown): T {
    this.#steps.push(() => close(resource));
    return resource;
  }

  defer(step: () => unknown): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    const steps = this.#steps.reverse();
    this.#steps = [];
    let first: unknown = null;
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== null) throw first;
  }
}
