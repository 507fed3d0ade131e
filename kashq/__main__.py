from kashq.cli import main

main()
