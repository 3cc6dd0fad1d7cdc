"""The trained presets the package ships: keras-hub preset directories
(config, weights, vocabulary), loaded by name through
`keras_sdgm.models.sdgm.sdgm_presets.trained_presets`."""
