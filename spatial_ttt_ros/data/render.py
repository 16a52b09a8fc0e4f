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
        self._prim_start = np.asarray(prim_start)
        self._prim_of_face = np.asarray(prim_of_face)
        self._face_len = np.array([len(f) for f in faces])
        self._face_start = np.r_[0, np.cumsum(self._face_len)[:-1]]
        self._face_verts = np.concatenate(faces)  # [sum of face lengths] vertex indices, face by face
        p0, p1, p2 = (self._verts[[f[k] for f in faces]] for k in range(3))
        nrm = np.cross(p1 - p0, p2 - p0)
        self._normals = nrm / np.linalg.norm(nrm, axis=1, keepdims=True)  # [F, 3] outward
        self._offsets = np.einsum("fk,fk->f", self._normals, p0)  # [F] n . x = d on the face
        self._material = np.asarray(material, dtype=np.int8)
        self._owner = np.asarray(owner + [-1], dtype=np.int16)  # [F + 1]; face -1 (nothing) -> -1
        # Floors and ceilings count as 0.2 % farther, so what stands on them wins the tie where
        # they touch instead of z-fighting along the contact line.
        self._depth_bias = np.where(np.isin(self._material, (_PLANKS, _TILES, _CARPET, _CEILING)), 0.998, 1.0)

        # Lighting: a key light from above at a random azimuth, a weaker fill from the other side.
        az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(35), np.radians(70))
        key = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        fill = np.array([-key[0], -key[1], 0.6 * key[2]])
        fill /= np.linalg.norm(fill)
        ambient = rng.uniform(0.35, 0.55)
        lambert = 0.75 * np.clip(self._normals @ key, 0, None) + 0.25 * np.clip(self._normals @ fill, 0, None)
        shade = ambient + (1 - ambient) * lambert
        shade[self._material == _CEILING] = 0.85
        rgb = np.asarray(colors, dtype=np.float64) * shade[:, None]
        self._face_rgb = np.clip(np.concatenate([rgb, [[40, 40, 45]]]), 0, 255).astype(np.uint8)  # [F + 1, 3]
        self._falloff = rng.uniform(0.03, 0.07)
        # Floors carry a texture (planks, tiles, carpet) drawn by a homography per floor face.
        self._floors = {f: _floor_texture(np.asarray(scene.rooms[k].polygon), self._material[f],
                                          self._face_rgb[f], rng)
                        for k, f in enumerate(np.flatnonzero(np.isin(self._material, (_PLANKS, _TILES, _CARPET))))}

        h, w = intrinsics.height, intrinsics.width
        self._v, self._u = (g.astype(np.float32) for g in np.mgrid[0:h, 0:w])
        fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
        # Near plane, then the image borders pushed out by the guard band: normal . p >= offset.
        self._clip_planes = [(np.array([0.0, 0.0, 1.0]), near),
                             (np.array([fx, 0.0, cx + _GUARD]), 0.0), (np.array([-fx, 0.0, w + _GUARD - cx]), 0.0),
                             (np.array([0.0, fy, cy + _GUARD]), 0.0), (np.array([0.0, -fy, h + _GUARD - cy]), 0.0)]

    def render(self, pose: CameraPose) -> Frame:
        """Image, depth and object-index buffer seen from `pose` (optical frame in the world)."""
        intr, near = self.intr, self.near
        fx, fy, cx, cy, w, h = intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height
        rot, cam = pose.rotation, pose.position
        vc = (self._verts - cam) @ rot  # [N, 3] optical frame
        x, y, z = vc[:, 0], vc[:, 1], vc[:, 2]

        # Cull primitives entirely behind the near plane or outside one side of the frustum,
        # and faces turned away from the camera.
        outside = np.stack([z < near, fx * x + cx * z < 0, fx * x + (cx - w) * z > 0,
                            fy * y + cy * z < 0, fy * y + (cy - h) * z > 0], axis=1)
        culled = np.logical_and.reduceat(outside, self._prim_start, axis=0).any(axis=1)
        facing = self._normals @ cam - self._offsets > 1e-9  # the camera is on the outer side

        # Per face, vectorised: projected bounding box and depth range; faces crossing the near
        # plane or far outside the image take the clipping path in the loop.
        fv, starts = self._face_verts, self._face_start
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (fx * x / z + cx)[fv]
            v = (fy * y / z + cy)[fv]
        zf = z[fv]
        zmin, zmax = np.minimum.reduceat(zf, starts), np.maximum.reduceat(zf, starts)
        umin, umax = np.minimum.reduceat(u, starts), np.maximum.reduceat(u, starts)
        vmin, vmax = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
        clip = (zmin < near) | (umin < -_GUARD) | (umax > w + _GUARD) | (vmin < -_GUARD) | (vmax > h + _GUARD)
        with np.errstate(invalid="ignore"):
            x0 = np.clip(np.floor(umin), 0, w).astype(np.int64)
            x1 = np.clip(np.ceil(umax) + 1, 0, w).astype(np.int64)
            y0 = np.clip(np.floor(vmin), 0, h).astype(np.int64)
            y1 = np.clip(np.ceil(vmax) + 1, 0, h).astype(np.int64)
        todo = facing & ~culled[self._prim_of_face] & (clip | ((x0 < x1) & (y0 < y1)))
        pts_all = np.zeros((len(fv), 2), np.int32)
        ok = ~clip[np.repeat(np.arange(len(starts)), self._face_len)]
        pts_all[ok] = np.round(np.stack([u[ok], v[ok]], axis=1) * 16).astype(np.int32)

        # Inverse depth of each face's plane: 1/z = a u + b v + c.
        n_cam = self._normals @ rot  # [F, 3]
        d_cam = self._offsets - self._normals @ cam  # [F]
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = self._depth_bias / d_cam
            a = n_cam[:, 0] / fx * scale
            b = n_cam[:, 1] / fy * scale
            c = (n_cam[:, 2] - n_cam[:, 0] * cx / fx - n_cam[:, 1] * cy / fy) * scale

        inv_depth = np.zeros((h, w), np.float32)
        face_buf = np.full((h, w), -1, np.int32)
        for f in np.flatnonzero(todo):
            if clip[f]:
                poly = self._clipped(vc[fv[starts[f]:starts[f] + self._face_len[f]]])
                if poly is None:
                    continue
                pu = fx * poly[:, 0] / poly[:, 2] + cx
                pv = fy * poly[:, 1] / poly[:, 2] + cy
                fx0, fx1 = max(math.floor(pu.min()), 0), min(math.ceil(pu.max()) + 1, w)
                fy0, fy1 = max(math.floor(pv.min()), 0), min(math.ceil(pv.max()) + 1, h)
                if fx0 >= fx1 or fy0 >= fy1:
                    continue
                pts = np.round(np.stack([pu - fx0, pv - fy0], axis=1) * 16).astype(np.int32)
                lo, hi = self._depth_bias[f] / poly[:, 2].max(), self._depth_bias[f] / poly[:, 2].min()
            else:
                fx0, fx1, fy0, fy1 = x0[f], x1[f], y0[f], y1[f]
                pts = pts_all[starts[f]:starts[f] + self._face_len[f]] - np.array([fx0 * 16, fy0 * 16], np.int32)
                lo, hi = self._depth_bias[f] / zmax[f], self._depth_bias[f] / zmin[f]
            mask = np.zeros((fy1 - fy0, fx1 - fx0), np.uint8)
            cv2.fillConvexPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=4)
            inv = float(a[f]) * self._u[fy0:fy1, fx0:fx1] + float(b[f]) * self._v[fy0:fy1, fx0:fx1] + float(c[f])
            # Coverage is a pixel generous at the edges, where the plane may run far off; the
            # polygon's own depth range bounds it.
            np.minimum(inv, float(hi), out=inv)
            np.maximum(inv, float(lo), out=inv)
            region = inv_depth[fy0:fy1, fx0:fx1]
            nearer = mask.view(bool) & (inv > region)
            np.putmask(region, nearer, inv)
            np.putmask(face_buf[fy0:fy1, fx0:fx1], nearer, f)
        return self._shade(pose, inv_depth, face_buf)

    def _clipped(self, poly: np.ndarray) -> np.ndarray | None:
        """A face [K, 3] (optical frame) clipped to the near plane and the guard band, or None."""
        for normal, offset in self._clip_planes:
            poly = _clip(poly, normal, offset)
            if len(poly) < 3:
                return None
        return poly

    def _shade(self, pose: CameraPose, inv_depth: np.ndarray, face_buf: np.ndarray) -> Frame:
        intr = self.intr
        with np.errstate(divide="ignore"):
            depth = 1.0 / inv_depth  # inf where nothing was drawn
        rgb = np.take(self._face_rgb, face_buf, axis=0)  # [H, W, 3]; -1 picks the background row
        k = intr.matrix @ pose.rotation.T
        for f, (texture, tex_to_world) in self._floors.items():
            mask = face_buf == f
            if not mask.any():
                continue
            # Floor texture pixel -> world (z = 0) -> image is a homography.
            homography = k @ (tex_to_world - np.c_[np.zeros((3, 2)), pose.position])
            warped = cv2.warpPerspective(texture, homography, (intr.width, intr.height), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE)
            cv2.copyTo(warped, mask.view(np.uint8), rgb)
        gain = 255.0 / (1.0 + self._falloff * np.minimum(depth, 20.0))
        gain3 = cv2.merge([gain.astype(np.uint8)] * 3)
        rgb = cv2.multiply(rgb, gain3, scale=1.0 / 255)
        return Frame(rgb, depth, np.take(self._owner, face_buf))


def _part_extent(part: Part) -> float:
    return max(part.hi[0] - part.lo[0], part.hi[1] - part.lo[1])


def _hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pseudo-random value in [0, 1) per integer cell (i, j)."""
    k = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663)
    return (k % 1009) / 1009.0


def _floor_texture(polygon: np.ndarray, material: int, rgb: np.ndarray, rng: np.random.Generator,
                   res: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """(texture [T, S, 3] uint8, 3x3 map of texture pixel (s, t, 1) to world (x, y, 0) as columns)."""
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    cols, rows = (np.ceil((hi - lo) / res).astype(int) + 1)
    t, s = np.mgrid[0:rows, 0:cols]
    x, y = lo[0] + s * res, lo[1] + t * res
    if material == _PLANKS:
        row = np.floor(y / 0.18)
        along = x + _hash(row, row) * 1.3
        seam = (np.mod(y, 0.18) < 0.006) | (np.mod(along, 1.3) < 0.01)
        gain = np.where(seam, 0.7, 0.88 + 0.22 * _hash(row, np.floor(along / 1.3)))
    elif material == _TILES:
        grout = (np.mod(x, 0.5) < 0.012) | (np.mod(y, 0.5) < 0.012)
        gain = np.where(grout, 0.75, 0.95 + 0.08 * _hash(np.floor(x / 0.5), np.floor(y / 0.5)))
    else:
        gain = 1.0 + 0.5 * cv2.GaussianBlur(rng.normal(0, 0.1, (rows, cols)).astype(np.float32), (0, 0), 2)
    texture = np.clip(rgb[None, None, :].astype(np.float64) * gain[..., None], 0, 255).astype(np.uint8)
    # Homogeneous: (s, t, 1) -> (x - 0, y - 0, 0) before the camera offset is subtracted per frame.
    tex_to_world = np.array([[res, 0.0, lo[0]], [0.0, res, lo[1]], [0.0, 0.0, 0.0]])
    return texture, tex_to_world
