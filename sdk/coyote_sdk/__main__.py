from coyote_sdk.cli import main

main()
