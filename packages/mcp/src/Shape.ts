/**
 * Inferred JSON shapes: what a type's payloads look like, without their values (`{amount: number, note?: string,
 * lines: [{sku: string, qty: number}]}`), so an agent learns the fields it can filter and fold on before it reads
 * any data, and no tenant data leaks into a description. Shapes merge across observations: a field missing from some
 * payloads is optional (`?`), a field seen with several kinds is a union.
 */
import { defaults } from "./McpConfig.ts"

type Kind = "null" | "boolean" | "number" | "string" | "array" | "object"

/** How much of a payload a shape looks at: fields per object (more are maps, not records) and nesting depth. */
export interface Limits {
  readonly fieldsMax: number
  readonly depthMax: number
}

export const defaultLimits: Limits = { fieldsMax: defaults.shapeFieldsMax, depthMax: defaults.shapeDepthMax }

export interface Shape {
  readonly limits: Limits
  readonly kinds: Set<Kind>
  /** Objects observed at this node (a field is optional when seen in fewer). */
  objects: number
  readonly fields: Map<string, { shape: Shape; seen: number }>
  items: Shape | undefined
}

export const make = (limits: Limits = defaultLimits): Shape => ({
  limits,
  kinds: new Set(),
  objects: 0,
  fields: new Map(),
  items: undefined
})

const kindOf = (value: unknown): Kind =>
  value === null
    ? "null"
    : Array.isArray(value)
    ? "array"
    : typeof value === "object"
    ? "object"
    : typeof value === "number"
    ? "number"
    : typeof value === "boolean"
    ? "boolean"
    : "string"

/** Adds one value to a shape (in place). */
export const observe = (shape: Shape, value: unknown, depth = 0): void => {
  const kind = kindOf(value)
  shape.kinds.add(kind)
  if (depth >= shape.limits.depthMax) return
  if (kind === "object") {
    shape.objects++
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      let field = shape.fields.get(key)
      if (field === undefined) {
        if (shape.fields.size >= shape.limits.fieldsMax) continue
        shape.fields.set(key, field = { shape: make(shape.limits), seen: 0 })
      }
      field.seen++
      observe(field.shape, v, depth + 1)
    }
  } else if (kind === "array") {
    for (const item of (value as ReadonlyArray<unknown>).slice(0, 20)) {
      observe(shape.items ??= make(shape.limits), item, depth + 1)
    }
  }
}

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** `{amount: number, note?: string}`; `unknown` for a shape that saw nothing. */
export const render = (shape: Shape): string => {
  const parts: Array<string> = []
  for (const kind of shape.kinds) {
    if (kind === "object") {
      const fields = [...shape.fields].map(([key, f]) =>
        `${identifier.test(key) ? key : JSON.stringify(key)}${f.seen < shape.objects ? "?" : ""}: ${render(f.shape)}`
      )
      parts.push(fields.length === 0 ? "{}" : `{${fields.join(", ")}}`)
    } else if (kind === "array") {
      parts.push(shape.items === undefined ? "[]" : `[${render(shape.items)}]`)
    } else {
      parts.push(kind)
    }
  }
  return parts.length === 0 ? "unknown" : parts.join(" | ")
}

/** The shape of a set of values, rendered. */
export const of = (values: Iterable<unknown>): string => {
  const shape = make()
  for (const v of values) observe(shape, v)
  return render(shape)
}
