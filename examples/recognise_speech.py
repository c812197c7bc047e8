"""Recognise spoken words in audio files with the speech champion.

Run from the project root after `python -m pipelines run speech`:

    python examples/recognise_speech.py recording.wav

Takes WAV files (FLAC, OGG or MP3 where soundfile reads them), any sample rate, mono or stereo.
Prints one JSON line per file: the word, its probability and the top-3 words.
"""

import sys

from champion import predict


def main(argv=None):
    """Args:
        argv (list[str] | None): audio file paths; default the command line.

    Returns:
        list[dict]: one answer per file.
    """
    return predict("speech", "audio", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
