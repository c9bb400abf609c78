/** Cursor pages that iterate themselves: `for await (const job of client.videos.list())`. */

export interface PageBody<T> {
  data: T[];
  has_more?: boolean;
  last_id?: string | null;
  next_after?: string | null;
  [key: string]: unknown;
}

export class Page<T extends { id: string }> implements AsyncIterable<T> {
  readonly data: T[];
  readonly hasMore: boolean;
  /** The raw response body. */
  readonly body: PageBody<T>;

  constructor(
    body: PageBody<T>,
    private readonly fetchPage: (after: string) => Promise<Page<T>>,
  ) {
    this.body = body;
    this.data = body.data ?? [];
    this.hasMore = Boolean(body.has_more) && this.data.length > 0;
  }

  /** The cursor for the next page: the server's, else the last item's id. */
  get nextAfter(): string | null {
    if (!this.hasMore) return null;
    return this.body.next_after ?? this.body.last_id ?? this.data[this.data.length - 1]?.id ?? null;
  }

  hasNextPage(): boolean {
    return this.nextAfter !== null;
  }

  async getNextPage(): Promise<Page<T>> {
    const after = this.nextAfter;
    if (after === null) throw new Error('no next page; check hasNextPage() first');
    return this.fetchPage(after);
  }

  /** This page and every later one. */
  async *iterPages(): AsyncGenerator<Page<T>> {
    let page: Page<T> = this;
    yield page;
    while (page.hasNextPage()) {
      page = await page.getNextPage();
      yield page;
    }
  }

  /** Every item of this page and the later ones, fetching pages as needed. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for await (const page of this.iterPages()) yield* page.data;
  }
}

/** A Page promise that can also be iterated directly, without awaiting the first page. */
export class PagePromise<T extends { id: string }> implements PromiseLike<Page<T>>, AsyncIterable<T> {
  constructor(private readonly promise: Promise<Page<T>>) {}

  then<A = Page<T>, B = never>(
    onfulfilled?: ((value: Page<T>) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.promise.then(onfulfilled, onrejected);
  }

  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<Page<T> | B> {
    return this.promise.catch(onrejected);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    yield* await this.promise;
  }
}
