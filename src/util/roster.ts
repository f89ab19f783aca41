/**
 * The members of a group that churns (the clients connected to a pool, or to poolside), by their
 * id, without a Map or a Set.
 *
 * V8 gives a Map or Set a new table as entries come and go, and leaves the old table pointing at
 * its successor (for iterators still walking it). Once one of those dead tables has been promoted
 * to the old generation, each scavenge treats its successor as live, and the successor's, down to
 * the current table, with every client those tables listed when they were replaced. With
 * short-lived clients that is nearly every client: measured under a PHP-style load (8 clients
 * each connecting, sending 5 commands and closing, ~680 clients/s), 1–2.3 MB survived each
 * scavenge and was promoted, and scavenges paused the process for 4–15 ms; without the two
 * client registries that were a Set and a Map, 0.35 MB and 2.5–3.6 ms.
 *
 * Here the members sit in a dense array (removal moves the last one into the gap) and the id →
 * position index holds only numbers: a table the engine discards refers to no member.
 */
export class Roster<T extends { readonly id: number }> {
  readonly #members: T[] = [];
  /** id → position in #members; numbers only (see above). */
  readonly #position: Record<number, number> = Object.create(null) as Record<number, number>;

  get size(): number {
    return this.#members.length;
  }

  /** Adds a member whose id is not in the roster. */
  add(member: T): void {
    if (this.#position[member.id] !== undefined) throw new Error(`roster: id ${member.id} is already a member`);
    this.#position[member.id] = this.#members.length;
    this.#members.push(member);
  }

  /** Removes the member with this id; false if there was none. */
  remove(id: number): boolean {
    const at = this.#position[id];
    if (at === undefined) return false;
    delete this.#position[id];
    const last = this.#members.pop() as T;
    if (at < this.#members.length) {
      this.#members[at] = last;
      this.#position[last.id] = at;
    }
    return true;
  }

  get(id: number): T | undefined {
    const at = this.#position[id];
    return at === undefined ? undefined : this.#members[at];
  }

  /** The members now, as a copy: a loop over it may remove members (closing a client does). */
  snapshot(): T[] {
    return this.#members.slice();
  }
}
