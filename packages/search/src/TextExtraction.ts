/**
 * What text an event contributes to search. It owns the extraction rules: by default an event's text is its type,
 * its stream id and every string leaf of `data` and `metadata` (weight 1 each); `SearchConfig.fields` replaces the
 * leaves for an event type (or `*`) with chosen JSON paths and BM25 weights. The whole text of an event is bounded by
 * `textCharsMax`; the embedder sees a prefix of at most `embedTextCharsMax` characters of a sentence-like form.
 *
 * The walk over `data` is iterative, so a deeply nested payload cannot overflow the stack.
 */
import type { Event } from "@chronos/domain"
import type { FieldRule, SearchConfigShape } from "./SearchConfig.ts"
import { identifierPhrase, identifierWords } from "./Tokenizer.ts"

export interface WeightedText {
  readonly text: string
  readonly weight: number
}

export interface ExtractedText {
  /** The texts for the keyword index, each with its BM25 weight; their total length is at most `textCharsMax`. */
  readonly fields: ReadonlyArray<WeightedText>
  /** The text for the embedder: `Type words. field texts`, at most `embedTextCharsMax` characters (stream ids are
   * identifiers, noise to a sentence model). */
  readonly sentence: string
}

export type ExtractionConfig = Pick<
  SearchConfigShape,
  "fields" | "typeWeight" | "streamWeight" | "textCharsMax" | "embedTextCharsMax" | "tokenCharsMax"
>

/**
 * A string that changes whenever a setting that decides what is indexed changes: a stored index built under another
 * fingerprint is rebuilt from the log instead of being mixed with differently extracted documents.
 */
export const fingerprint = (config: ExtractionConfig): string =>
  JSON.stringify([
    config.fields,
    config.typeWeight,
    config.streamWeight,
    config.textCharsMax,
    config.embedTextCharsMax,
    config.tokenCharsMax
  ])

/** Every string leaf under `root`, depth-first in document order, until `budget` characters are collected. */
const stringLeaves = (root: unknown, budget: number, out: Array<string>): number => {
  const stack: Array<unknown> = [root]
  let left = budget
  while (stack.length > 0 && left > 0) {
    const value = stack.pop()
    if (typeof value === "string") {
      if (value.length === 0) continue
      const text = value.length > left ? value.slice(0, left) : value
      out.push(text)
      left -= text.length + 1
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push(value[i])
    } else if (value !== null && typeof value === "object") {
      const values = Object.values(value)
      for (let i = values.length - 1; i >= 0; i--) stack.push(values[i])
    }
  }
  return budget - left
}

/** The value at a dotted path (`data.a.b`), walking into every element of the arrays it meets. */
const atPath = (event: Event.StoredEvent, path: string): Array<unknown> => {
  const [head, ...rest] = path.split(".")
  let values: Array<unknown> = [head === "data" ? event.data : event.metadata]
  for (const key of rest) {
    const next: Array<unknown> = []
    for (const v of values) {
      if (Array.isArray(v)) {
        for (const item of v) {
          if (item !== null && typeof item === "object" && key in item) next.push((item as Record<string, unknown>)[key])
        }
      } else if (v !== null && typeof v === "object" && key in v) next.push((v as Record<string, unknown>)[key])
    }
    values = next
  }
  return values
}

/** The rules for an event type: its own, else `*`, else undefined (all string leaves). */
const rulesFor = (config: ExtractionConfig, type: string): ReadonlyArray<FieldRule> | undefined =>
  config.fields[type] ?? config.fields["*"]

export const extract = (event: Event.StoredEvent, config: ExtractionConfig): ExtractedText => {
  const fields: Array<WeightedText> = []
  let left = config.textCharsMax
  const push = (text: string, weight: number) => {
    if (left <= 0 || text.length === 0 || weight <= 0) return
    const cut = text.length > left ? text.slice(0, left) : text
    fields.push({ text: cut, weight })
    left -= cut.length + 1
  }
  push(identifierWords(event.type), config.typeWeight)
  push(identifierWords(event.stream), config.streamWeight)
  const bodies: Array<string> = []
  const rules = rulesFor(config, event.type)
  if (rules === undefined) {
    const leaves: Array<string> = []
    stringLeaves(event.data, left, leaves)
    stringLeaves(event.metadata, left, leaves)
    for (const leaf of leaves) {
      push(leaf, 1)
      bodies.push(leaf)
    }
  } else {
    for (const rule of rules) {
      const leaves: Array<string> = []
      for (const value of atPath(event, rule.path)) {
        if (typeof value === "number" || typeof value === "boolean") leaves.push(String(value))
        else stringLeaves(value, Math.max(0, left), leaves)
      }
      for (const leaf of leaves) {
        push(leaf, rule.weight)
        if (rule.weight > 0) bodies.push(leaf)
      }
    }
  }
  let sentence = `${identifierPhrase(event.type)}. ${bodies.join(". ")}`
  if (sentence.length > config.embedTextCharsMax) sentence = sentence.slice(0, config.embedTextCharsMax)
  return { fields, sentence }
}
