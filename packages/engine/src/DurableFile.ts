/**
 * Durable replacement of small files (store descriptors, checkpoints, registries, manifests, index snapshots):
 * write a temporary file next to the target, fsync it, rename it over the target, fsync the directory. A reader
 * (or a restart after a crash at any point) sees the old document or the new one, never a torn mix, and once the
 * returned promise resolves the new one survives a power loss.
 *
 * Why every step: without the file fsync a crash can leave the renamed file empty (ext4 delayed allocation);
 * without the directory fsync the rename itself may be lost; a directory created on the way is durable only once
 * its parent is fsync'd. Temporary names are unique so that two writers of the same file never share one.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as fsp from "node:fs/promises"
import * as path from "node:path"

/** fsync of a directory: makes the entries created, renamed or removed in it durable. */
export const fsyncDir = async (dir: string): Promise<void> => {
  const handle = await fsp.open(dir, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

export const fsyncDirSync = (dir: string): void => {
  const fd = fs.openSync(dir, "r")
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** Creates `dir` (and its missing parents), each durably: the parent of every directory created is fsync'd. */
export const ensureDir = async (dir: string): Promise<void> => {
  const first = await fsp.mkdir(dir, { recursive: true })
  if (first === undefined) return
  for (let created = dir;; created = path.dirname(created)) {
    await fsyncDir(path.dirname(created))
    if (created === first || path.dirname(created) === created) break
  }
}

export const ensureDirSync = (dir: string): void => {
  const first = fs.mkdirSync(dir, { recursive: true })
  if (first === undefined) return
  for (let created = dir;; created = path.dirname(created)) {
    fsyncDirSync(path.dirname(created))
    if (created === first || path.dirname(created) === created) break
  }
}

const temporaryName = (file: string): string => `${file}.${randomBytes(6).toString("hex")}.tmp`

/**
 * Replaces `file` with `data` durably. `data` may also be a function that writes the temporary file itself (large
 * outputs produced by a library that wants a path); it is fsync'd after it returns.
 */
export const writeAtomic = async (
  file: string,
  data: string | Uint8Array | ((tmp: string) => Promise<void>)
): Promise<void> => {
  const dir = path.dirname(file)
  await ensureDir(dir)
  const tmp = temporaryName(file)
  try {
    if (typeof data === "function") {
      await data(tmp)
      const handle = await fsp.open(tmp, "r+")
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    } else {
      const handle = await fsp.open(tmp, "w")
      try {
        await handle.writeFile(data)
        await handle.sync()
      } finally {
        await handle.close()
      }
    }
    await fsp.rename(tmp, file)
  } catch (error) {
    await fsp.rm(tmp, { force: true })
    throw error
  }
  await fsyncDir(dir)
}

/** `writeAtomic` for startup paths that are synchronous (opening a store). */
export const writeAtomicSync = (file: string, data: string | Uint8Array): void => {
  const dir = path.dirname(file)
  ensureDirSync(dir)
  const tmp = temporaryName(file)
  try {
    const fd = fs.openSync(tmp, "w")
    try {
      fs.writeFileSync(fd, data)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, file)
  } catch (error) {
    fs.rmSync(tmp, { force: true })
    throw error
  }
  fsyncDirSync(dir)
}
