"""python -m scripts.devstack"""

from scripts.devstack.cli import app

app()
