"""Pose estimators, each a plain class over its model: frame in, people (keypoints) out."""
