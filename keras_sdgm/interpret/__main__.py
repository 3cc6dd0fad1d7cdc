from keras_sdgm.interpret.report import main

main()
