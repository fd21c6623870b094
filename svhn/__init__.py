"""The SVHN data set (Netzer et al. 2011) and the project-wide image-set contract.

    import svhn
    x, y = svhn.load("train")                  # uint8 (N, 32, 32, 3), int64 (N,) in 0..9
    svhn.save_image_set("set.npz", x, y)       # the format every package reads and writes

Files are found in `data_dir`, else $SVHN_DIR, else ~/.cache/svhn-gan/svhn, and downloaded
there when missing (see svhn.data). SVHN is for non-commercial use only; cite Netzer et al.,
"Reading Digits in Natural Images with Unsupervised Feature Learning", NIPS Workshop 2011.
"""
from svhn.data import SPLITS, SVHNError, load, read_mat, verify
from svhn.download import DownloadError, download_file
from svhn.imageset import (ImageSetError, check_image_set, image_grid, load_image_set,
                           save_grid_png, save_image_set, to_float, to_uint8)

__all__ = ["load", "verify", "read_mat", "download_file", "SPLITS", "SVHNError", "DownloadError",
           "ImageSetError", "check_image_set", "save_image_set", "load_image_set",
           "to_float", "to_uint8", "image_grid", "save_grid_png"]
