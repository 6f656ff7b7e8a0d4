package org.edgepqrnn.demo;

import java.util.HashSet;
import java.util.Set;
import org.junit.runner.Description;
import org.junit.runner.JUnitCore;
import org.junit.runner.Request;
import org.junit.runner.notification.Failure;
import org.junit.runner.notification.RunListener;

/**
 * Runs the JVM tests and closes with the line CI reads: "N passed, N failed". A test
 * that never ran (its class set-up failed) counts as failed.
 */
public final class TestMain {
  public static void main(String[] args) {
    final Set<String> finished = new HashSet<>();
    final Set<String> failedTests = new HashSet<>();
    Request request = Request.aClass(DemoJvmTest.class);
    int planned = request.getRunner().testCount();
    JUnitCore core = new JUnitCore();
    core.addListener(new RunListener() {
      @Override
      public void testFinished(Description d) {
        finished.add(d.getDisplayName());
        System.out.println((failedTests.contains(d.getDisplayName()) ? "  FAIL " : "  ok   ") + d.getMethodName());
      }

      @Override
      public void testFailure(Failure f) {
        failedTests.add(f.getDescription().getDisplayName());
        System.out.println("FAILED " + f.getDescription().getDisplayName() + ": " + f.getMessage());
        String trace = f.getTrace();
        System.out.println(trace.length() > 1500 ? trace.substring(0, 1500) + "..." : trace);
      }
    });
    core.run(request);
    finished.removeAll(failedTests);
    int passed = finished.size();
    System.out.println(passed + " passed, " + (planned - passed) + " failed");
    System.exit(passed == planned && planned > 0 ? 0 : 1);
  }
}
