from rapport_timeline.entrypoints.server import main

main()
