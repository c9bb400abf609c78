import type { Kinetoscope, RequestOptions } from '../client.js';
import type { Model, ModelList } from '../types.js';

export class Models {
  constructor(private readonly client: Kinetoscope) {}

  /** The models the server runs (the default model first), with tasks, sizes, classes, samplers and backend. */
  async list(options: RequestOptions = {}): Promise<Model[]> {
    const { data } = await this.client.request<ModelList>({ method: 'GET', path: '/v1/models', ...options });
    return data.data;
  }

  /** One model. */
  async retrieve(id: string, options: RequestOptions = {}): Promise<Model> {
    const { data } = await this.client.request<Model>({ method: 'GET', path: `/v1/models/${encodeURIComponent(id)}`, ...options });
    return data;
  }
}
