from careflow.cli import main

main()
