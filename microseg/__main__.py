from microseg.engine.tools.cli import main

main()
