from pertcontrast.cli import main

main()
