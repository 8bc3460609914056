from chathistory.cli import main

main(prog_name="chathistory")
