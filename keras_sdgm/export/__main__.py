from keras_sdgm.export.cli import main

main()
