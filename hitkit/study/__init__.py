"""The study core, the bottom layer: study.toml schema and loading, table schemas and their
file names, atomic files, image IO and storage, the study's size and cost. Imports nothing
else of the project."""
