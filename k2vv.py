"""k2vv: verify that an OpenAI-compatible provider serves tool calling correctly (skeleton)."""
import sys

if sys.version_info < (3, 10):  # before any import that would die with a traceback
    sys.stderr.write("k2vv: needs Python >= 3.10, found %d.%d (%s); run it with python3.10 or newer\n"
                     % (sys.version_info[0], sys.version_info[1], sys.executable))
    sys.exit(2)

__version__ = "0.1.0"


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="k2vv")
    parser.add_argument("--version", action="version", version="k2vv " + __version__)
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
