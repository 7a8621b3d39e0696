"""What the harness does to a cluster: apply and wait (kube), deploy a run, roll out and
upgrade agents (rolling, in place, through the injector), inject faults."""
