from coderig.cli import main

main()
