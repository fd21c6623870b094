"""common — small helpers every package's command line shares (no dependency on `nn`).

    from common.files import atomic_write_json, check_output_path
    from common.cli import run_cli, add_backend_options, apply_backend_options

files: atomic writes (a temporary name in the destination folder, then a rename) and
`check_output_path`, which tells, before any work, whether a path the user gave can be written.
cli: the command-line error convention (one line on stderr, exit status 2) and the shared
--backend / --threads options.
"""
