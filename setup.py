"""ubnas_tf: binary neural networks by differentiable architecture search (UBNAS), for TF/Keras."""
import pathlib

import setuptools

README = pathlib.Path(__file__).with_name("README.md")

# The stack was measured to work together (DEVELOPERS.md); see README "Version pins".
INSTALL_REQUIRES = [
    "tensorflow==2.16.2",  # LCE 0.16's converter imports TF-internal Keras code of 2.16
    "tf-keras==2.16.0",  # the Keras 2 API that larq and LCE need (TF_USE_LEGACY_KERAS=1)
    "larq==0.14.0",
    "larq-compute-engine==0.16.0",
    "tensorflow-datasets==4.9.7",
    "protobuf>=3.20.3,<5",  # protobuf 5+ stops TensorFlow 2.16 from importing
    "tensorflow-metadata>=1.13,<1.17",  # newer releases pull protobuf 5+
    "importlib_resources>=6",  # tensorflow-datasets' download_and_prepare imports it via etils
    "keras-tuner==1.4.7",
    "absl-py>=2.1,<3",
    "numpy>=1.26,<2",  # TensorFlow 2.16 wheels are built against numpy 1.x
    "PyYAML>=6,<7",
    "matplotlib>=3.8,<4",
    "pillow>=10",
]

setuptools.setup(
    name="ubnas_tf",
    version="0.1.0",
    description=__doc__,
    long_description=README.read_text(encoding="utf-8") if README.is_file() else __doc__,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["ubnas_tf", "ubnas_tf.*"]),
    package_data={"ubnas_tf": ["data/demo/*"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=8,<10", "pytest-xdist>=3.6,<4"]},
    entry_points={"console_scripts": ["lce_convert=ubnas_tf.export.cli:console_main"]},
)
