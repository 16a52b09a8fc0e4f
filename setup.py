"""Conventional entry point for tools that still call setup.py (`python setup.py --version`, old
pip/colcon paths). Everything is declared in pyproject.toml ([project], [tool.setuptools]); this file
adds nothing. The ROS build (msg/srv, nodes, launch, config) is CMakeLists.txt + package.xml."""

from setuptools import setup

setup()
