"""Annotation round trip: pre-annotations for Label Studio/CVAT/labelme, corrected labels back as COCO."""
