"""Tools that are not pipeline stages: params.yaml writer, stage dependency check, serving benchmark."""
