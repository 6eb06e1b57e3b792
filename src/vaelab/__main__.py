from vaelab.cli import run

run()
