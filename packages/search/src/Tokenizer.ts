/**
 * Words of a text as the keyword index sees them. Documents and queries go through the same function, so a query
 * matches exactly the words an event was indexed under.
 *
 * Rules, in order:
 *  - NFKC, then lowercase (Unicode-aware, so `Straße`/`STRASSE` differ but `Ｏｒｄｅｒ` folds to `order`);
 *  - a word is a run of letters and digits (`\p{L}\p{N}`, plus combining marks); everything else separates words,
 *    so `ORD-77812` is `ord 77812` and `a.b@c.d` is `a b c d`;
 *  - words longer than `tokenCharsMax` are cut to that length;
 *  - a light English plural folding (Harman's S-stemmer) on purely alphabetic words of 4+ letters:
 *    `-ies` → `-y` (not `-eies`, `-aies`), `-es` → `-e` (not `-aes`, `-ees`, `-oes`), `-s` → `` (not `-us`, `-ss`).
 *    It is deliberately weak: it never merges words that differ in meaning beyond number.
 *
 * Identifiers (event types, stream ids) are also split at case changes by `identifierWords`, so `PaymentFailed` is
 * found by `payment failed` as well as by `paymentfailed`.
 */

const wordPattern = /[\p{L}\p{N}][\p{L}\p{N}\p{M}]*/gu
const alphabetic = /^\p{L}+$/u

/** Harman's S-stemmer (see the module comment). */
export const stem = (word: string): string => {
  const n = word.length
  if (n < 4 || word.charCodeAt(n - 1) !== 115 /* s */ || !alphabetic.test(word)) return word
  if (word.endsWith("ies") && !word.endsWith("eies") && !word.endsWith("aies")) return word.slice(0, -3) + "y"
  if (word.endsWith("es") && !word.endsWith("aes") && !word.endsWith("ees") && !word.endsWith("oes")) {
    return word.slice(0, -1)
  }
  if (word.endsWith("us") || word.endsWith("ss")) return word
  return word.slice(0, -1)
}

/** The words of `text` (in order, with repeats). */
export const tokenize = (text: string, tokenCharsMax: number): Array<string> => {
  const out: Array<string> = []
  const folded = text.normalize("NFKC").toLowerCase()
  for (const m of folded.matchAll(wordPattern)) {
    const word = m[0].length > tokenCharsMax ? m[0].slice(0, tokenCharsMax) : m[0]
    out.push(stem(word))
  }
  return out
}

/**
 * An identifier as text for indexing: itself, then its parts when it has case changes or separators, e.g.
 * `OrderPlaced` → `OrderPlaced Order Placed`, `billing.invoice-sent` → `billing.invoice-sent` (the separators
 * already split it), `HTTPRequestFailed` → `HTTPRequestFailed HTTP Request Failed`.
 */
export const identifierWords = (id: string): string => {
  const parts = id.replace(/([\p{Ll}\p{N}])(\p{Lu})/gu, "$1 $2").replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, "$1 $2")
  return parts === id ? id : `${id} ${parts}`
}

/** An identifier as words for a sentence embedder: `OrderPlaced` → `Order Placed`, `billing.invoice-sent` → `billing invoice sent`. */
export const identifierPhrase = (id: string): string =>
  id.replace(/([\p{Ll}\p{N}])(\p{Lu})/gu, "$1 $2").replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, "$1 $2").replace(/[._:\-]+/g, " ")
