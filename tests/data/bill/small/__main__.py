"""A small Pulumi program the kit did not write (for `selfhost bill`'s tests): one plain EC2 instance with an
extra EBS volume, and an Auto Scaling group of two to four on-demand instances from a launch template."""

import pulumi_aws as aws

box = aws.ec2.Instance(
    "box",
    ami="ami-0123456789abcdef0",
    instance_type="g5.xlarge",
    root_block_device={"volume_size": 60, "volume_type": "gp3"},
    tags={"team": "ml"},
)
data = aws.ebs.Volume("data", availability_zone="us-east-1a", size=200, type="gp3")
aws.ec2.VolumeAttachment("data", device_name="/dev/sdf", volume_id=data.id, instance_id=box.id)

template = aws.ec2.LaunchTemplate(
    "workers",
    image_id="ami-0123456789abcdef0",
    instance_type="g5.2xlarge",
    block_device_mappings=[{"device_name": "/dev/xvda", "ebs": {"volume_size": 80, "volume_type": "gp3"}}],
)
aws.autoscaling.Group(
    "workers",
    min_size=2,
    max_size=4,
    desired_capacity=2,
    availability_zones=["us-east-1a", "us-east-1b"],
    launch_template={"id": template.id, "version": "$Latest"},
)
