/**
 * Times as a model writes them: ISO-8601 (`2026-11-23T10:00:00Z`, `2026-11-23`) or natural phrases
 * (`now`, `yesterday`, `3 hours ago`, `last 24 hours`, `since yesterday`, `this week`, `between 2026-11-01 and
 * 2026-11-03`). This module owns the grammar and its meaning; phrases are resolved against a `now` the caller reads
 * from the Clock, and every time is UTC (a datetime without a zone is read as UTC, not as the server's local time).
 *
 * Two readings: an *instant* (for `asOf`, `since`, `until`, `from`, `to`) and a *range* (for `time`), where a day
 * phrase covers the whole day and `last N hours` starts N hours ago.
 */
import { AsOf } from "@chronos/domain"

export interface Range {
  readonly since?: number | undefined
  readonly until?: number | undefined
}

const second = 1_000
const minute = 60 * second
const hour = 60 * minute
const day = 24 * hour

const units: ReadonlyArray<readonly [RegExp, number]> = [
  [/^(s|sec|secs|second|seconds)$/, second],
  [/^(m|min|mins|minute|minutes)$/, minute],
  [/^(h|hr|hrs|hour|hours)$/, hour],
  [/^(d|day|days)$/, day],
  [/^(w|wk|wks|week|weeks)$/, 7 * day],
  // Calendar months and years vary; a model asking for "last 3 months" means roughly that, and sees the
  // resolved ISO time in the result.
  [/^(mo|mos|month|months)$/, 30 * day],
  [/^(y|yr|yrs|year|years)$/, 365 * day]
]

const unitMs = (unit: string): number | undefined => units.find(([re]) => re.test(unit))?.[1]

const startOfDay = (ms: number) => Math.floor(ms / day) * day

/** Monday 00:00 UTC of the ISO week containing `ms`. */
const startOfWeek = (ms: number) => {
  const d = new Date(startOfDay(ms))
  return d.getTime() - ((d.getUTCDay() + 6) % 7) * day
}

const startOfMonth = (ms: number) => {
  const d = new Date(ms)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
}

const startOfYear = (ms: number) => Date.UTC(new Date(ms).getUTCFullYear(), 0, 1)

const normalize = (input: string) => input.trim().toLowerCase().replace(/\s+/g, " ")

/** `N unit` / `a unit` / `an unit` / `24h` → a duration in ms. */
const duration = (text: string): number | undefined => {
  const m = /^(\d+(?:\.\d+)?|an?|one)\s*([a-z]+)$/.exec(text)
  if (m === null) return undefined
  const n = m[1] === "a" || m[1] === "an" || m[1] === "one" ? 1 : Number(m[1])
  const ms = unitMs(m[2]!)
  return ms === undefined || !Number.isFinite(n) ? undefined : n * ms
}

const dayPhrase = (text: string, now: number): number | undefined => {
  switch (text) {
    case "today":
      return startOfDay(now)
    case "yesterday":
      return startOfDay(now) - day
    case "tomorrow":
      return startOfDay(now) + day
    default:
      return undefined
  }
}

/** ISO-8601 with a date part; a datetime without a zone is UTC. */
const isoInstant = (input: string): number | undefined => {
  const text = input.trim().toUpperCase()
  const zoned = /^\d{4}-\d{2}-\d{2}[T ][0-9:.]+$/.test(text) ? `${text.replace(" ", "T")}Z` : text
  const parsed = AsOf.parseTimestamp(zoned)
  return parsed._tag === "Some" ? parsed.value : undefined
}

const isDateOnly = (input: string) => /^\d{4}-\d{2}-\d{2}$/.test(input.trim())

/** An instant: ISO, `now`, `today`, `yesterday`, `start/end of …`, `N units ago`, `last N units` (its start). */
export const parseInstant = (input: string, now: number): number | undefined => {
  const iso = isoInstant(input)
  if (iso !== undefined) return iso
  let text = normalize(input).replace(/^(as of|at|since|from|after) /, "")
  if (text === "now") return now
  const dayStart = dayPhrase(text, now)
  if (dayStart !== undefined) return dayStart
  const bounded = /^(start|beginning|end) of (.+)$/.exec(text)
  if (bounded !== null) {
    const span = spanOf(bounded[2]!, now)
    if (span === undefined) return undefined
    return bounded[1] === "end" ? span.end - 1 : span.start
  }
  if (text === "this week" || text === "this month" || text === "this year") return spanOf(text, now)?.start
  const ago = /^(.+) ago$/.exec(text)
  if (ago !== null) {
    const ms = duration(ago[1]!)
    return ms === undefined ? undefined : now - ms
  }
  text = text.replace(/^(the )?(last|past|previous) /, "")
  const ms = duration(text) ?? (unitMs(text) !== undefined ? unitMs(text) : undefined)
  return ms === undefined ? undefined : now - ms
}

/** A named calendar span: a day phrase, an ISO date, this/last week/month/year. */
const spanOf = (text: string, now: number): { start: number; end: number } | undefined => {
  const dayStart = dayPhrase(text, now) ?? (isDateOnly(text) ? isoInstant(text) : undefined)
  if (dayStart !== undefined) return { start: dayStart, end: dayStart + day }
  switch (text) {
    case "this week":
      return { start: startOfWeek(now), end: startOfWeek(now) + 7 * day }
    case "this month": {
      const start = startOfMonth(now)
      return { start, end: startOfMonth(start + 32 * day) }
    }
    case "this year": {
      const start = startOfYear(now)
      return { start, end: startOfYear(start + 366 * day) }
    }
    default:
      return undefined
  }
}

/**
 * A range: `last 24 hours` / `past week` (from then on), `yesterday` / `2026-11-23` (that whole day), `today`,
 * `this week`, `since X`, `before X` / `until X`, `between X and Y` / `from X to Y`, or a bare instant (from then on).
 */
export const parseRange = (input: string, now: number): Range | undefined => {
  const text = normalize(input)
  const between = /^(?:between|from) (.+?) (?:and|to|until) (.+)$/.exec(text)
  if (between !== null) {
    const since = parseInstant(between[1]!, now)
    const until = parseInstant(between[2]!, now)
    if (since === undefined || until === undefined) return undefined
    // `between 2026-11-01 and 2026-11-03` includes the last day: an end given as a date means its end.
    return { since, until: isDateOnly(between[2]!) || dayPhrase(between[2]!, now) !== undefined ? until + day - 1 : until }
  }
  const upper = /^(?:before|until|till|up to) (.+)$/.exec(text)
  if (upper !== null) {
    const until = parseInstant(upper[1]!, now)
    return until === undefined ? undefined : { until }
  }
  const lower = /^(?:since|after|from) (.+)$/.exec(text)
  if (lower !== null) {
    const since = parseInstant(lower[1]!, now)
    return since === undefined ? undefined : { since }
  }
  const span = spanOf(text, now)
  if (span !== undefined) return span.end > now ? { since: span.start } : { since: span.start, until: span.end - 1 }
  const since = parseInstant(text, now)
  return since === undefined ? undefined : { since }
}

/** `2026-11-23T10:00:00.500Z`; whole seconds drop their `.000` (shorter in a model's context, still exact). */
export const iso = (ms: number): string => new Date(ms).toISOString().replace(".000Z", "Z")

/** What the grammar accepts, for error messages. */
export const instantHelp = "an ISO-8601 time (2026-11-23T10:00:00Z or 2026-11-23; UTC when no zone is given) or a " +
  "phrase: now, today, yesterday, start of today, end of yesterday, 3 hours ago, last 24 hours"

export const rangeHelp = "an ISO-8601 time or date, or a phrase: last 24 hours, past 7 days, today, yesterday, " +
  "this week, since yesterday, before 2026-11-01, between 2026-11-01 and 2026-11-03"
