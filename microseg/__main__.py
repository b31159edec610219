from microseg.engine.cli import main

main()
