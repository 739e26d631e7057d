"""The bottom layer: names, observation layouts, validators, the model config and the run-folder
layout that every other layer shares. Nothing here imports Ray, torch or gymnasium."""
