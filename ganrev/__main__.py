from ganrev.cli import main

main()
