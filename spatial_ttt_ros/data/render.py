"""A numpy/OpenCV rasteriser for synthetic scenes, with a per-pixel z-buffer.

Every surface is a convex planar polygon (box faces, cylinder prisms, floors, ceilings, walls),
drawn in camera coordinates with the intrinsics and optical-frame poses of camera.py, so pixels
and annotations agree exactly. Per polygon: clip against the near plane (and a guard band
around the image), fill its coverage mask with cv2.fillConvexPoly over its pixel bounding box,
evaluate the exact inverse depth of its plane at each pixel (1/z is affine in u, v for a plane),
and keep a pixel only where it is nearer than what the z-buffer holds. Drawing order does not
matter. Colours are flat per face: Lambert shading from a key and a fill light plus ambient,
chosen per scene from the seed, with procedural floor textures and distance falloff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from spatial_ttt_ros.data.shapes import Part, doorways, object_parts, wall_boxes
from spatial_ttt_ros.spatial.camera import CameraIntrinsics, CameraPose
from spatial_ttt_ros.spatial.geometry import OrientedBox
from spatial_ttt_ros.spatial.scene import Scene

DEFAULT_ROOM_HEIGHT = 2.6
_PLAIN, _PLANKS, _TILES, _CARPET, _WALL, _CEILING = range(6)
_WALL_COLORS = ((225, 220, 205), (205, 215, 220), (230, 225, 225), (200, 210, 190), (235, 230, 215))
_FLOOR_COLORS = {_PLANKS: ((165, 120, 80), (190, 150, 105), (120, 85, 60)),
                 _TILES: ((200, 200, 195), (170, 165, 155), (215, 205, 185)),
                 _CARPET: ((120, 115, 110), (95, 105, 125), (150, 135, 115))}
_GUARD = 64  # pixels around the image that polygons are clipped to


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32 optical z in metres, inf where nothing was hit
    object_index: np.ndarray  # [H, W] int16 index into scene.objects, -1 for walls/floor/ceiling


def _prism(lo: np.ndarray, hi: np.ndarray, kind: str, segments: int) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices [V, 3] and faces (vertex index lists) of a box or an inscribed vertical cylinder."""
    if kind == "box":
        ring = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    else:
        a = np.linspace(0, 2 * np.pi, segments, endpoint=False)
        c, r = (lo[:2] + hi[:2]) / 2, (hi[:2] - lo[:2]) / 2
        ring = c + r * np.stack([np.cos(a), np.sin(a)], axis=1)
    n = len(ring)
    verts = np.concatenate([np.c_[ring, np.full(n, lo[2])], np.c_[ring, np.full(n, hi[2])]])
    faces = [list(range(n)), list(range(n, 2 * n))]
    faces += [[i, (i + 1) % n, n + (i + 1) % n, n + i] for i in range(n)]
    return verts, faces


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _clip(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Sutherland-Hodgman: the part of convex polygon [K, 3] where normal . p >= offset."""
    s = poly @ normal - offset
    if np.all(s >= 0):
        return poly
    out = []
    for i in range(len(poly)):
        j = (i + 1) % len(poly)
        if s[i] >= 0:
            out.append(poly[i])
        if (s[i] >= 0) != (s[j] >= 0):
            out.append(poly[i] + (poly[j] - poly[i]) * (s[i] / (s[i] - s[j])))
    return np.array(out).reshape(-1, 3)


class Renderer:
    """Renders a Scene from camera poses; deterministic for a given scene, intrinsics and seed."""

    def __init__(self, scene: Scene, intrinsics: CameraIntrinsics, seed: int = 0, near: float = 0.05,
                 cylinder_segments: int = 12) -> None:
        self.scene, self.intr, self.near = scene, intrinsics, near
        rng = np.random.default_rng(seed)
        verts: list[np.ndarray] = []
        faces: list[np.ndarray] = []
        colors: list[tuple] = []
        owner: list[int] = []
        material: list[int] = []
        prim_start: list[int] = []
        prim_of_face: list[int] = []

        def add(local_verts: np.ndarray, local_faces: list[list[int]], rot: np.ndarray, center: np.ndarray,
                color: tuple, obj: int, mat: int) -> None:
            base = sum(len(v) for v in verts)
            world = local_verts @ rot.T + center
            centroid = world.mean(axis=0)
            prim_start.append(base)
            for f in local_faces:
                idx = np.asarray(f)
                p = world[idx]
                n = np.cross(p[1] - p[0], p[2] - p[0])
                if np.dot(n, p.mean(axis=0) - centroid) < 0:  # orient outwards
                    idx, n = idx[::-1], -n
                faces.append(idx + base)
                colors.append(color)
                owner.append(obj)
                material.append(mat)
                prim_of_face.append(len(prim_start) - 1)
            verts.append(world)

        openings = doorways(scene.rooms)
        self.occluders: list[OrientedBox] = []  # the walls, for visibility checks
        for room in scene.rooms:
            height = room.height or DEFAULT_ROOM_HEIGHT
            poly = np.asarray(room.polygon, dtype=np.float64)
            floor_mat = int(rng.choice([_PLANKS, _TILES, _CARPET]))
            floor_col = _FLOOR_COLORS[floor_mat][int(rng.integers(3))]
            wall_col = _WALL_COLORS[int(rng.integers(len(_WALL_COLORS)))]
            n = len(poly)
            # Floor and ceiling as two faces of a flat prism: only the inner sides face the camera.
            slab = np.concatenate([np.c_[poly, np.zeros(n)], np.c_[poly, np.full(n, height)]])
            # `add` orients them away from the slab; flip so the floor faces up, the ceiling down.
            add(slab, [list(range(n))], np.eye(3), np.zeros(3), floor_col, -1, floor_mat)
            faces[-1] = faces[-1][::-1]
            add(slab, [list(range(n, 2 * n))], np.eye(3), np.zeros(3), (240, 240, 238), -1, _CEILING)
            faces[-1] = faces[-1][::-1]
            for box in wall_boxes(room, openings, height):
                v, f = _prism(-box.half, box.half, "box", 4)
                add(v, f, box.rotation, box.center, wall_col, -1, _WALL)
                self.occluders.append(box)
        for i, obj in enumerate(scene.objects):
            rot = _yaw_matrix(obj.box.yaw)
            for part in object_parts(obj.category, obj.box.size, obj.color, obj.id):
                v, f = _prism(np.array(part.lo), np.array(part.hi), part.kind,
                              cylinder_segments if _part_extent(part) > 0.15 else 8)
                add(v, f, rot, obj.box.center, part.color, i, _PLAIN)

        self._verts = np.concatenate(verts)  # [N, 3] world
        self._faces = faces
        self._prim_start = np.asarray(prim_start)
        self._prim_of_face = np.asarray(prim_of_face)
        first = np.array([self._verts[f[0]] for f in faces])
        nrm = np.array([np.cross(self._verts[f[1]] - self._verts[f[0]], self._verts[f[2]] - self._verts[f[0]])
                        for f in faces])
        self._normals = nrm / np.linalg.norm(nrm, axis=1, keepdims=True)  # [F, 3] outward
        self._offsets = np.einsum("fk,fk->f", self._normals, first)  # [F] n . x = d on the face
        self._material = np.asarray(material, dtype=np.int8)
        self._owner = np.asarray(owner + [-1], dtype=np.int16)  # index -1 (no face) -> -1

        # Lighting: a key light from above at a random azimuth, a weaker fill from the other side.
        az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(35), np.radians(70))
        key = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        fill = np.array([-key[0], -key[1], 0.6 * key[2]])
        fill /= np.linalg.norm(fill)
        ambient = rng.uniform(0.35, 0.55)
        lambert = 0.75 * np.clip(self._normals @ key, 0, None) + 0.25 * np.clip(self._normals @ fill, 0, None)
        shade = ambient + (1 - ambient) * lambert
        shade[self._material == _CEILING] = 0.85
        rgb = np.asarray(colors, dtype=np.float32) * shade[:, None].astype(np.float32)
        self._face_rgb = np.concatenate([rgb, [[40.0, 40.0, 45.0]]]).astype(np.float32)  # [F + 1, 3]
        self._falloff = rng.uniform(0.03, 0.07)

        h, w = intrinsics.height, intrinsics.width
        self._v, self._u = (g.astype(np.float32) for g in np.mgrid[0:h, 0:w])

    def render(self, pose: CameraPose) -> Frame:
        """Image, depth and object-index buffer seen from `pose` (optical frame in the world)."""
        intr, near = self.intr, self.near
        fx, fy, cx, cy, w, h = intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height
        rot, cam = pose.rotation, pose.position
        vc = (self._verts - cam) @ rot  # [N, 3] optical frame

        # Cull primitives entirely behind the near plane or outside one side of the frustum.
        x, y, z = vc[:, 0], vc[:, 1], vc[:, 2]
        outside = np.stack([z < near, fx * x + cx * z < 0, fx * x + (cx - w) * z > 0,
                            fy * y + cy * z < 0, fy * y + (cy - h) * z > 0], axis=1)
        culled = np.logical_and.reduceat(outside, self._prim_start, axis=0).any(axis=1)
        facing = self._normals @ cam - self._offsets > 1e-9  # the camera is on the outer side
        todo = np.flatnonzero(facing & ~culled[self._prim_of_face])

        # Inverse depth of each face's plane: 1/z = a u + b v + c.
        n_cam = self._normals @ rot  # [F, 3]
        d_cam = self._offsets - self._normals @ cam  # [F]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = n_cam[:, 0] / (fx * d_cam)
            b = n_cam[:, 1] / (fy * d_cam)
            c = (n_cam[:, 2] - n_cam[:, 0] * cx / fx - n_cam[:, 1] * cy / fy) / d_cam

        inv_depth = np.zeros((h, w), np.float32)
        face_buf = np.full((h, w), -1, np.int32)
        sides = [(np.array([fx, 0, cx + _GUARD]), 0.0), (np.array([-fx, 0, w + _GUARD - cx]), 0.0),
                 (np.array([0, fy, cy + _GUARD]), 0.0), (np.array([0, -fy, h + _GUARD - cy]), 0.0)]
        near_plane = (np.array([0.0, 0.0, 1.0]), near)
        for f in todo:
            poly = vc[self._faces[f]]
            poly = _clip(poly, *near_plane)
            if len(poly) < 3:
                continue
            u = fx * poly[:, 0] / poly[:, 2] + cx
            v = fy * poly[:, 1] / poly[:, 2] + cy
            if u.min() < -_GUARD or u.max() > w + _GUARD or v.min() < -_GUARD or v.max() > h + _GUARD:
                for plane in sides:
                    poly = _clip(poly, *plane)
                    if len(poly) < 3:
                        break
                if len(poly) < 3:
                    continue
                u = fx * poly[:, 0] / poly[:, 2] + cx
                v = fy * poly[:, 1] / poly[:, 2] + cy
            x0, x1 = max(int(math.floor(u.min())), 0), min(int(math.ceil(u.max())) + 1, w)
            y0, y1 = max(int(math.floor(v.min())), 0), min(int(math.ceil(v.max())) + 1, h)
            if x0 >= x1 or y0 >= y1:
                continue
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            pts = np.round(np.stack([u - x0, v - y0], axis=1) * 16).astype(np.int32)
            cv2.fillConvexPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=4)
            inv = float(a[f]) * self._u[y0:y1, x0:x1] + float(b[f]) * self._v[y0:y1, x0:x1] + float(c[f])
            # Outside the polygon's exact edge (coverage is a pixel generous) the plane may run
            # far off; the polygon's own depth range bounds it.
            zs = poly[:, 2]
            np.clip(inv, float(1.0 / zs.max()), float(1.0 / zs.min()), out=inv)
            region = inv_depth[y0:y1, x0:x1]
            nearer = mask.view(bool) & (inv > region)
            np.putmask(region, nearer, inv)
            np.putmask(face_buf[y0:y1, x0:x1], nearer, f)

        return self._shade(pose, inv_depth, face_buf)

    def _shade(self, pose: CameraPose, inv_depth: np.ndarray, face_buf: np.ndarray) -> Frame:
        intr = self.intr
        with np.errstate(divide="ignore"):
            depth = np.where(inv_depth > 0, 1.0 / inv_depth, np.inf).astype(np.float32)
        rgb = self._face_rgb[face_buf]  # [H, W, 3]; -1 picks the background row
        gain = 1.0 / (1.0 + self._falloff * np.minimum(depth, 20.0))
        mat = np.where(face_buf >= 0, self._material[face_buf], _PLAIN)
        textured = np.flatnonzero((mat == _PLANKS) | (mat == _TILES) | (mat == _WALL))
        if textured.size:
            vv, uu = np.divmod(textured, intr.width)
            zz = depth.reshape(-1)[textured]
            pc = np.stack([(uu - intr.cx) / intr.fx * zz, (vv - intr.cy) / intr.fy * zz, zz], axis=1)
            world = pc @ pose.rotation.T + pose.position  # [T, 3]
            gain.reshape(-1)[textured] *= _texture(mat.reshape(-1)[textured], world)
        out = rgb * gain[..., None]
        return Frame(np.clip(out, 0, 255).astype(np.uint8), depth, self._owner[face_buf])


def _part_extent(part: Part) -> float:
    return max(part.hi[0] - part.lo[0], part.hi[1] - part.lo[1])


def _hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pseudo-random value in [0, 1) per integer cell (i, j)."""
    k = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663)
    return (k % 1009) / 1009.0


def _texture(material: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Brightness factor [T] for textured pixels from their world points [T, 3]."""
    out = np.ones(len(material), np.float32)
    x, y, z = world[:, 0], world[:, 1], world[:, 2]
    planks = material == _PLANKS
    if planks.any():
        row = np.floor(y[planks] / 0.18)
        along = x[planks] + _hash(row, row) * 1.3
        col = np.floor(along / 1.3)
        seam = (np.mod(y[planks], 0.18) < 0.006) | (np.mod(along, 1.3) < 0.01)
        out[planks] = np.where(seam, 0.7, 0.88 + 0.22 * _hash(row, col))
    tiles = material == _TILES
    if tiles.any():
        i, j = np.floor(x[tiles] / 0.5), np.floor(y[tiles] / 0.5)
        grout = (np.mod(x[tiles], 0.5) < 0.012) | (np.mod(y[tiles], 0.5) < 0.012)
        out[tiles] = np.where(grout, 0.75, 0.95 + 0.08 * _hash(i, j))
    walls = material == _WALL
    if walls.any():
        out[walls] = np.where(z[walls] < 0.08, 0.7, 1.0)  # skirting board
    return out
