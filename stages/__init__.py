"""The scripts dvc.yaml runs, one per stage: thin bodies over onnxship/ under its stage runner."""
