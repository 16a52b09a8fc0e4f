"""spatial_ttt_ros: a persistent spatial memory for robots, built online by Spatial-TTT."""

from pkgutil import extend_path

# The generated interfaces (spatial_ttt_ros.msg / .srv and their typesupport libraries) live in
# the install prefix. Merging every spatial_ttt_ros directory on sys.path lets a source checkout
# that comes first on sys.path (running from the repository root) still find them.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
