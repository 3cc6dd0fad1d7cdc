"""Configs saved by earlier releases, read with today's argument names."""


def renamed_config(config, renames):
    """A copy of `config` with the old keys in `renames` given their new names.

    Args:
        config: dict. A saved layer or model config.
        renames: dict mapping an old key to the argument that replaced it.

    Returns:
        A new dict; `config` is unchanged.

    Raises:
        ValueError: if `config` holds both an old key and its new name.
    """
    config = dict(config)
    for old, new in renames.items():
        if old not in config:
            continue
        if new in config:
            raise ValueError(
                f"The config holds both `{old}` (the name of earlier "
                f"releases) and `{new}`, which replaced it; keep only "
                f"`{new}`. Received: {old}={config[old]!r}, "
                f"{new}={config[new]!r}"
            )
        config[new] = config.pop(old)
    return config


def with_earlier_defaults(config, defaults):
    """A copy of `config` with the arguments it lacks set as it was saved.

    A config saved before an argument existed was written when the model
    behaved as that argument's value in `defaults`, which may differ from
    today's default (for example the token mixer before `encoder_type`).

    Args:
        config: dict. A saved layer or model config.
        defaults: dict mapping an argument to the value it had before it
            was saved in configs.

    Returns:
        A new dict; `config` is unchanged.
    """
    return {**defaults, **config}
