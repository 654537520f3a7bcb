"""``python -m martlet``: the ``martlet`` command (what a launcher such as torchrun runs)."""

from martlet.cli import run

if __name__ == "__main__":
    run()
